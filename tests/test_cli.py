"""The ``mmspeech`` command end to end on real (espeak-ng) speech and tiny checkpoints.

Most tests call ``mmspeech.cli.main`` in-process (fast); one runs the console script itself.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
import soundfile as sf
from conftest import (
    LETTERS,
    MMS,
    SPECIALS,
    build_lid_checkpoint,
    espeak,
    reference_model,
    speech,
    vocab_for,
)

from mmspeech.cli import main
from mmspeech.writers import FORMATS

SRT_TIME = re.compile(r"^(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)$")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture
def clips(tmp_path):
    """Two real-speech wav files in a directory."""
    folder = tmp_path / "clips"
    folder.mkdir()
    sf.write(folder / "a.wav", espeak("the cat sat on the mat"), 16_000)
    sf.write(folder / "b.wav", espeak("seven green trees and a river"), 16_000)
    return folder


def run(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()  # drop what fixtures printed
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def seconds(match: re.Match[str], first: int) -> float:
    h, m, s, ms = (int(match.group(i)) for i in range(first, first + 4))
    return h * 3600 + m * 60 + s + ms / 1000


def test_every_output_format(capsys, mms_dir, clips, tmp_path):
    out_dir = tmp_path / "out"
    code, out, err = run(
        capsys, "transcribe", clips, "--model", mms_dir, "--language", "fra",
        "--output-dir", out_dir, "--output-format", "all", "--word-timestamps",
    )  # fmt: skip
    assert code == 0, err
    assert out == "" and err == ""  # quiet when not on a terminal
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        f"{stem}.{fmt}" for stem in "ab" for fmt in FORMATS
    )
    for stem in "ab":
        data = json.loads((out_dir / f"{stem}.json").read_text())
        duration = sf.info(clips / f"{stem}.wav").duration
        assert data["language"] == "fra" and data["duration"] == pytest.approx(duration, abs=5e-4)
        segments = [s for s in data["segments"] if s["text"]]
        assert segments and all(s["words"] for s in segments)
        txt = (out_dir / f"{stem}.txt").read_text().splitlines()
        assert txt == [s["text"] for s in segments]
        srt = (out_dir / f"{stem}.srt").read_text().strip().split("\n\n")
        assert len(srt) == len(segments)
        for number, (cue, segment) in enumerate(zip(srt, segments, strict=True), start=1):
            index, times, text = cue.split("\n")
            match = SRT_TIME.match(times)
            assert index == str(number) and match and text == segment["text"]
            assert seconds(match, 1) == pytest.approx(segment["start"], abs=1e-3)
            assert seconds(match, 5) == pytest.approx(segment["end"], abs=1e-3)
            assert 0 <= seconds(match, 1) < seconds(match, 5) <= duration + 0.02
        vtt = (out_dir / f"{stem}.vtt").read_text()
        assert vtt.startswith("WEBVTT\n") and vtt.count(" --> ") == len(segments)
        tsv = (out_dir / f"{stem}.tsv").read_text().splitlines()
        assert tsv[0] == "start\tend\ttext" and len(tsv) == len(segments) + 1
        assert tsv[1].split("\t")[0] == str(round(segments[0]["start"] * 1000))


def test_stdout_forms(capsys, mms_dir, clips):
    code, out, _ = run(capsys, "transcribe", clips / "a.wav", "--model", mms_dir, "-l", "eng")
    assert code == 0 and out.count("\n") == 1
    code, srt, _ = run(capsys, "transcribe", clips / "a.wav", "--model", mms_dir, "-l", "eng",
                       "-f", "srt")  # fmt: skip
    assert code == 0 and srt.startswith("1\n00:00:")
    code, many, _ = run(capsys, "transcribe", clips, "--model", mms_dir, "-l", "eng")
    lines = many.splitlines()
    assert code == 0 and [line.split("\t")[0] for line in lines] == [
        str(clips / "a.wav"),
        str(clips / "b.wav"),
    ]
    assert lines[0].split("\t")[1] == out.strip()
    code, _, err = run(capsys, "transcribe", clips, "--model", mms_dir, "-f", "json")
    assert code == 2 and "--output-dir" in err


def test_auto_language(capsys, mms_dir, clips, tmp_path):
    lid = build_lid_checkpoint(tmp_path / "lid", favour="deu")
    code, out, err = run(capsys, "transcribe", clips / "a.wav", "--model", mms_dir,
                         "--lid-model", lid, "-f", "json")  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["language"] == "deu" and data["language_probability"] > 0.5


def test_failing_file_among_good_ones(capsys, mms_dir, clips, tmp_path):
    (clips / "broken.wav").write_bytes(b"RIFF\x00\x00 not audio at all")
    out_dir = tmp_path / "out"
    code, _, err = run(capsys, "transcribe", clips, clips / "missing.wav", "--model", mms_dir,
                       "-l", "fra", "-o", out_dir)  # fmt: skip
    assert code == 1
    assert "broken.wav" in err and "missing.wav" in err and "Traceback" not in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.txt", "b.txt"]
    code, _, err = run(capsys, "transcribe", clips / "a.wav", "--model", mms_dir, "-l", "tlh")
    assert code == 1 and "tlh" in err


@pytest.fixture
def coarse_asr_dir(tmp_path, oracle):
    """A single-language (flat vocabulary) CTC checkpoint with 80 samples per frame: long audio
    stays cheap for the tiny model (the shared one has 20, and attention is quadratic)."""
    model = reference_model(
        "wav2vec2", "ctc", seed=3, vocab_size=len(SPECIALS) + len(LETTERS["eng"]),
        conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4), **MMS,
    )  # fmt: skip
    directory = tmp_path / "coarse"
    model.save_pretrained(directory)
    vocab = tmp_path / "flat-vocab.json"
    vocab.write_text(json.dumps(vocab_for(LETTERS["eng"])))
    oracle.Wav2Vec2Processor(
        feature_extractor=oracle.Wav2Vec2FeatureExtractor(return_attention_mask=True),
        tokenizer=oracle.Wav2Vec2CTCTokenizer(str(vocab)),
    ).save_pretrained(directory)
    return directory


def test_multi_minute_file_in_bounded_memory(capsys, coarse_asr_dir, tmp_path):
    audio = espeak("a long recording with many words in it", seconds=120.0)
    long, short = tmp_path / "long.wav", tmp_path / "short.wav"
    sf.write(long, audio, 16_000, subtype="FLOAT")
    sf.write(short, audio[: 30 * 16_000], 16_000, subtype="FLOAT")
    size, duration = audio.nbytes, len(audio) / 16_000
    del audio
    args = ["--model", coarse_asr_dir, "-f", "json", "--window", "5", "--context", "1",
            "--max-segment", "10", "--batch-size", "2"]  # fmt: skip
    peaks, outputs = [], []
    for path in (short, short, long):  # the first run does the imports and loads the model
        tracemalloc.start()  # numpy buffers and Python objects (not torch's own allocations)
        try:
            code, out, err = run(capsys, "transcribe", path, *args)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert code == 0, err
        outputs.append(out)
    # 4x the audio, about the same peak: memory does not grow with the file's length
    assert peaks[2] < 1.2 * peaks[1] and peaks[2] < 0.8 * size, (peaks, size)
    data = json.loads(outputs[2])
    assert data["language"] is None and data["duration"] == pytest.approx(duration, abs=5e-4)
    segments = data["segments"]
    assert len(segments) >= 12  # cut at --max-segment (10 s) at the latest
    assert all(s["end"] - s["start"] <= 10.5 for s in segments)
    assert segments[-1]["end"] > duration - 10.5
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(segments))


@pytest.mark.oracle
def test_identify(capsys, clips, tmp_path):
    lid = build_lid_checkpoint(tmp_path / "lid", favour="fra")
    code, out, _ = run(capsys, "identify", clips / "a.wav", "--model", lid, "-k", "2")
    rows = [line.split("\t") for line in out.splitlines()]
    assert code == 0 and next(r[0] for r in rows) == "fra" and rows[0][2] == "French"
    assert len(rows) == 2 and float(rows[0][1]) > float(rows[1][1])
    code, out, _ = run(capsys, "identify", clips, "--model", lid, "-f", "json")
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["language"] for r in records] == ["fra", "fra"]
    assert records[0]["path"].endswith("a.wav")


def test_align(capsys, mms_dir, tmp_path):
    path = tmp_path / "speech.wav"
    sf.write(path, espeak("the rain is dense"), 16_000)
    code, out, err = run(capsys, "align", path, "--text", "The rain, is DENSE Привет",
                         "--language", "English", "--model", mms_dir)  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    words = data["words"]
    assert [w["word"] for w in words] == ["The", "rain,", "is", "DENSE", "Привет"]
    # lower-cased, punctuation dropped, Cyrillic romanised by uroman ("privet") and reduced to
    # the tiny English vocabulary (e t a o i n s h r d l)
    assert [w["normalized"] for w in words] == ["the", "rain", "is", "dense", "riet"]
    assert all(len(w["chars"]) == len(w["normalized"]) for w in words)
    starts = [c["start"] for w in words for c in w["chars"]]
    assert starts == sorted(starts) and starts[0] >= 0
    assert words[-1]["end"] <= data["duration"] + 1e-6
    assert all(a["end"] <= b["start"] + 1e-9 for a, b in itertools.pairwise(words))
    code, tsv, _ = run(capsys, "align", path, "--text", "the rain", "-l", "eng",
                       "--model", mms_dir, "-f", "tsv")  # fmt: skip
    assert code == 0 and tsv.splitlines()[0] == "start\tend\tword\tscore"
    assert [row.split("\t")[2] for row in tsv.splitlines()[1:]] == ["the", "rain"]
    # a transcript too long for the audio: a clear error, no traceback
    short = tmp_path / "short.wav"
    sf.write(short, speech(0.1, 0), 16_000)
    code, _, err = run(capsys, "align", short, "--text", "the rain is dense " * 20, "-l", "eng",
                       "--model", mms_dir)  # fmt: skip
    assert code == 1 and "does not fit" in err and "Traceback" not in err


def test_align_directory_uses_sibling_transcripts(capsys, mms_dir, tmp_path):
    folder = tmp_path / "book"
    folder.mkdir()
    sf.write(folder / "one.wav", espeak("the rain"), 16_000)
    (folder / "one.txt").write_text("the rain\n")
    sf.write(folder / "two.wav", espeak("dense"), 16_000)  # no two.txt: reported, not fatal
    code, _, err = run(capsys, "align", folder, "-l", "eng", "--model", mms_dir,
                       "-o", tmp_path / "timings")  # fmt: skip
    assert code == 1 and "two.txt" in err
    data = json.loads((tmp_path / "timings" / "one.align.json").read_text())
    assert [w["word"] for w in data["words"]] == ["the", "rain"]


def test_languages(capsys, mms_dir, tmp_path):
    code, out, _ = run(capsys, "languages", "--model", mms_dir)
    assert code == 0
    assert out.splitlines() == ["deu\tGerman", "eng\tEnglish", "fra\tFrench"]
    code, out, _ = run(capsys, "languages", "--model", mms_dir, "--search", "fren", "--json")
    assert code == 0 and json.loads(out) == [{"code": "fra", "name": "French"}]
    lid = build_lid_checkpoint(tmp_path / "lid", favour="eng", labels=("spa", "eng"))
    code, out, _ = run(capsys, "languages", "--model", lid)
    assert code == 0 and out.splitlines() == ["spa\tSpanish", "eng\tEnglish"]


@pytest.mark.parametrize(
    "command", ["transcribe", "identify", "align", "speak", "translate", "languages"]
)
def test_help_has_examples(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "examples:" in out and f"mmspeech {command}" in out


def test_console_script_is_quiet_when_piped(mms_dir, clips):
    script = Path(sys.executable).with_name("mmspeech")
    if not script.exists():
        pytest.skip("the package is not installed with its console script")
    result = subprocess.run(
        [str(script), "transcribe", str(clips / "a.wav"), "--model", str(mms_dir), "-l", "fra"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0 and result.stderr == ""
    module = subprocess.run(
        [sys.executable, "-m", "mmspeech", "transcribe", str(clips / "a.wav"), "--model",
         str(mms_dir), "-l", "fra"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert module.stdout == result.stdout and result.stdout.strip()


def test_plugins_join_the_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("transcribe", "identify", "align", "speak", "translate", "languages"):
        assert f"    {command} " in out or f"    {command}\n" in out
    for module, command in (("mmspeech.server.cli", "serve"), ("mmspeech.training.cli", "train-")):
        try:
            __import__(module)
        except ImportError:
            continue
        assert f"    {command}" in out


def test_progress_bars_only_on_a_terminal(capsys, monkeypatch, mms_dir, clips):
    args = ["transcribe", clips, "--model", mms_dir, "-l", "eng"]
    capsys.readouterr()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, out, err = run(capsys, *args)
    # the files bar, on "a terminal" (its last 2/2 frame is drawn only if tqdm's refresh interval
    # has passed, so look for the bar itself)
    assert code == 0 and "/2 [" in err and "file/s" in err
    assert "audio s/s" in err  # each file's bar counts seconds of audio, not "s/s"
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, out, err = run(capsys, *args, "--quiet")
    assert code == 0 and err == "" and len(out.splitlines()) == 2
