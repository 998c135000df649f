"""The command line under misuse and accidents: usage errors name the flag (exit 2), outputs are
written atomically, batches, threads, progress bars and logging, messages that say something.
Runs on the bundled demo checkpoints (no oracle)."""

from __future__ import annotations

import json
import logging
import sys

import pytest
import soundfile as sf
import torch
from conftest import espeak

import mmspeech
from mmspeech.cli import common, main
from mmspeech.errors import MissingDependencyError

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def run(capsys, *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["transcribe", "x.wav", "--batch-size", "0"], "--batch-size"),
        (["transcribe", "x.wav", "--window", "-3"], "--window"),
        (["transcribe", "x.wav", "--window", "inf"], "--window"),
        (["transcribe", "x.wav", "--window", "4", "--context", "2"], "--context"),
        (["transcribe", "x.wav", "--max-segment", "0"], "--max-segment"),
        (["identify", "x.wav", "-k", "0"], "--top-k"),
        (["identify", "x.wav", "--max-seconds", "0"], "--max-seconds"),
        (["identify", "x.wav", "--batch-size", "zero"], "--batch-size"),
        (["align", "x.wav", "-l", "eng", "--window", "0"], "--window"),
        (["speak", "hi", "--batch-size", "0"], "--batch-size"),
        (["speak", "hi", "--speaking-rate", "0"], "--speaking-rate"),
        (["translate", "x.wav", "--num-beams", "0"], "--num-beams"),
        (["transcribe", "x.wav", "--threads", "0"], "--threads"),
        (["align", "x.wav", "-l", "eng", "-t", "x", "--batch-size", "0"], "--batch-size"),
        (["train-ctc", "--from", "e", "--out", "o", "--train", "t", "--steps", "0"], "--steps"),
        (["train-lid", "--from", "e", "--out", "o", "--train", "t", "--lr", "-1"], "--lr"),
        (["train-adapter", "c", "--lang", "x", "--train", "t", "--eval-fraction", "1"],
         "--eval-fraction"),
    ],
)  # fmt: skip
def test_bad_numbers_are_usage_errors_naming_the_flag(capsys, args, flag):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(args)
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert exit_.value.code == 2 and flag in last and "Traceback" not in err, err
    assert "_s " not in last and "window_s" not in err  # the flag, not the API field


def test_outputs_are_atomic(capsys, demo, tmp_path, monkeypatch):
    """A failure while writing (here: formatting fails; in life a kill or a full disk) leaves
    the earlier output whole, and no temporary file behind."""
    asr, _ = demo
    audio = tmp_path / "a.wav"
    sf.write(audio, espeak("the rain in spain"), 16_000)
    out = tmp_path / "out"
    code, _, err = run(capsys, "transcribe", audio, "--model", asr, "-l", "eng", "-o", out,
                       "-f", "json")  # fmt: skip
    assert code == 0, err
    first = (out / "a.json").read_text()
    assert json.loads(first)["text"] and (out / "a.json").stat().st_mode & 0o777 == 0o666 & ~(
        _umask()
    )

    def broken(*args):
        raise OSError("No space left on device")

    monkeypatch.setattr("mmspeech.cli.transcribe.format_transcription", broken)
    code, _, err = run(capsys, "transcribe", audio, "--model", asr, "-l", "eng", "-o", out,
                       "-f", "json")  # fmt: skip
    assert code == 1 and "No space left" in err
    assert (out / "a.json").read_text() == first
    assert sorted(p.name for p in out.iterdir()) == ["a.json"]


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_identify_batches_and_still_names_a_bad_file(capsys, demo, tmp_path):
    _, lid = demo
    folder = tmp_path / "clips"
    folder.mkdir()
    for name, voice, text in [("a", "de", "guten morgen wie geht es dir"),
                              ("c", "es", "hola como estas hoy amigo"),
                              ("d", "ru", "привет как дела у тебя")]:  # fmt: skip
        sf.write(folder / f"{name}.wav", espeak(text, voice), 16_000)
    (folder / "b.wav").write_bytes(b"RIFF not really audio")
    args = ["identify", folder, "--model", lid, "-k", "1"]
    code, one, err = run(capsys, *args, "--batch-size", "1")
    assert code == 1 and "b.wav" in err
    code, batched, err = run(capsys, *args, "--batch-size", "3")
    assert code == 1 and "b.wav" in err and "Traceback" not in err
    assert batched == one and [line.split("\t")[1] for line in one.splitlines()] == [
        "deu", "spa", "rus"
    ]  # fmt: skip


def test_threads_are_set(capsys, monkeypatch, tmp_path):
    seen: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    code, _, err = run(capsys, "identify", tmp_path / "missing.wav", "--threads", "3")
    assert code == 1 and seen == [3] and "missing.wav" in err


def test_log_records_go_around_a_progress_bar(capsys, monkeypatch):
    from tqdm import tqdm

    common.setup_logging(_namespace())
    written: list[str] = []
    monkeypatch.setattr(tqdm, "write", lambda text, file=None: written.append(text))
    log = logging.getLogger("mmspeech.test")
    log.warning("before the bar")
    with tqdm(total=2, file=sys.stderr):
        log.warning("while the bar is shown")
    log.warning("after the bar")
    err = capsys.readouterr().err
    assert written == ["WARNING mmspeech.test: while the bar is shown"]
    assert "before the bar" in err and "after the bar" in err


def _namespace() -> object:
    import argparse

    return argparse.Namespace(quiet=False, verbose=False, threads=None)


def test_help_and_messages_say_something(capsys, demo, tmp_path):
    asr, _ = demo
    with pytest.raises(SystemExit):
        main(["train-adapter", "--help"])
    out = capsys.readouterr().out
    assert "10% held out" in out and "%%" not in out
    code, out, err = run(capsys, "languages", "--model", asr, "--search", "zulu")
    assert code == 1 and out == "" and "no match" in err and "zulu" in err
    folder = tmp_path / "clips"
    (folder / "x.wav").mkdir(parents=True)
    sf.write(folder / "y.wav", espeak("hello"), 16_000)
    code, out, err = run(capsys, "transcribe", folder, "--model", asr, "-l", "eng")
    assert code == 0 and "x.wav" in err and "not a file" in err and out.strip()


def test_lexicon_without_kenlm_says_what_was_asked_for(monkeypatch):
    from mmspeech.ctc.lm import LMDecoder

    monkeypatch.setitem(sys.modules, "kenlm", None)
    with pytest.raises(MissingDependencyError, match="only the words of a lexicon") as error:
        LMDecoder.from_words(["<pad>", "|", "a"], ["a"])
    assert "n-gram" not in str(error.value)


def test_package_namespace_holds_only_public_names():
    names = dir(mmspeech)
    assert not {"Any", "TYPE_CHECKING", "importlib", "annotations"} & set(names)
    assert {"transcribe", "pipeline", "Wav2Vec2ForCTC", "__version__"} <= set(names)
    assert all(not name.startswith("_") for name in mmspeech.__all__)


def test_languages_offline_falls_back_to_the_demo_and_knows_its_short_names(
    capsys, monkeypatch, tmp_path
):
    from huggingface_hub import constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    code, out, err = run(capsys, "languages")
    assert code == 0 and "fra\tFrench" in out and "mmspeech-demo" in err
    code, out, _ = run(capsys, "languages", "--model", "demo-lid", "--json")
    assert code == 0 and {row["code"] for row in json.loads(out)} >= {"eng", "rus"}
    code, _, err = run(capsys, "languages", "--model", "someone/missing-model")
    assert code == 1 and err.count("\n") == 1  # not a fallback: one line saying why


def test_align_takes_a_batch_size(capsys, tmp_path):
    audio = tmp_path / "hello.wav"
    sf.write(audio, espeak("hello world", "en"), 16000)
    code, out, err = run(capsys, "align", audio, "-l", "eng", "-t", "hello world", "--model",
                         "demo", "--batch-size", "2")  # fmt: skip
    assert code == 0, err
    assert [w["word"] for w in json.loads(out)["words"]] == ["hello", "world"]


def test_an_unreadable_file_is_reported_as_such(capsys, monkeypatch, tmp_path):
    audio = tmp_path / "locked.wav"
    sf.write(audio, espeak("hello", "en"), 16000)
    real_access = __import__("os").access
    monkeypatch.setattr("os.access", lambda p, mode: False if str(p) == str(audio) else
                        real_access(p, mode))  # fmt: skip  # root reads any file
    code, _, err = run(capsys, "transcribe", audio, "-l", "eng", "--model", "demo")
    assert code == 1 and "cannot be read: permission denied" in err
    assert "audio file" not in err.split("permission denied")[0].lower()
