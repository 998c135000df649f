"""End to end through the `mmspeech` command with the project's own demo checkpoints (trained
on espeak-ng speech, src/mmspeech/demo): real recognition, automatic language routing by the
demo LID model, word timestamps and forced alignment on real synthetic speech.

The checkpoints are small and their held-out CER is 6-26 % (README), so the bounds below are
what they reach on espeak's default voices, with a margin; they fail on random weights.
"""

from __future__ import annotations

import itertools
import json

import jiwer
import pytest
import soundfile as sf
from conftest import espeak

from mmspeech.cli import main
from mmspeech.ctc.lm import write_unigram_arpa

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

# espeak voice, text, the language the demo LID must route to
CASES = [
    ("ru", "привет как дела у тебя сегодня", "rus"),
    ("el", "καλημέρα τι κάνεις σήμερα", "ell"),
    ("es", "hola como estas hoy amigo", "spa"),
    ("de", "guten morgen wie geht es dir", "deu"),
]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo-clips")
    for voice, text, _ in CASES:
        sf.write(folder / f"{voice}.wav", espeak(text, voice), 16_000)
    return folder


def run(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_transcribe_routes_each_language_and_recognises_it(capsys, tmp_path, demo, clips):
    asr, lid = demo
    out_dir = tmp_path / "out"
    code, _, err = run(
        capsys, "transcribe", clips, "--model", asr, "--lid-model", lid,
        "-f", "json", "-o", out_dir, "--word-timestamps", "-q",
    )  # fmt: skip
    assert code == 0, err
    for voice, text, language in CASES:
        result = json.loads((out_dir / f"{voice}.json").read_text(encoding="utf-8"))
        assert result["language"] == language
        assert result["language_probability"] > 0.9
        assert jiwer.cer(text, result["text"]) < 0.3, (voice, result["text"])
        words = [w for segment in result["segments"] for w in segment["words"]]
        assert words, voice
        starts = [w["start"] for w in words]
        assert starts == sorted(starts)
        assert all(0 <= w["start"] < w["end"] <= result["duration"] + 0.02 for w in words)


def test_align_places_every_word_of_a_known_transcript(capsys, demo, clips):
    asr, _ = demo
    text = CASES[0][1]
    code, out, err = run(
        capsys, "align", clips / "ru.wav", "--text", text, "--model", asr, "-l", "ru", "-f", "tsv"
    )
    assert code == 0, err
    rows = [line.split("\t") for line in out.strip().splitlines()[1:]]
    assert [row[2] for row in rows] == text.split()
    times = [(float(row[0]), float(row[1])) for row in rows]
    assert all(start < end for start, end in times)
    assert all(times[i][1] <= times[i + 1][0] for i in range(len(times) - 1))
    duration = sf.info(str(clips / "ru.wav")).duration
    assert times[-1][1] <= duration + 0.02
    # speech fills the clip: the words span most of it
    assert times[-1][1] - times[0][0] > 0.6 * duration


def test_default_model_offline_falls_back_to_the_demo_checkpoints(
    capsys, monkeypatch, tmp_path, demo, clips
):
    """The README's first command offline, on a fresh machine: the default hub checkpoints are
    neither cached nor downloadable, so the bundled demo ones answer — and the user is told."""
    import huggingface_hub
    import huggingface_hub.file_download
    from huggingface_hub import constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))

    def no_network(*args, **kwargs):
        pytest.fail(f"a hub request was made while offline: {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", no_network)
    monkeypatch.setattr(huggingface_hub.file_download, "get_hf_file_metadata", no_network)

    code, out, err = run(capsys, "transcribe", clips / "ru.wav", "-f", "json")
    assert code == 0, err
    result = json.loads(out)
    assert result["language"] == "rus"  # detected by the demo LID model, also a fallback
    assert jiwer.cer(CASES[0][1], result["text"]) < 0.3
    # said on stderr, where the CLI shows warnings
    assert "facebook/mms-1b-all" in err and "facebook/mms-lid-126" in err
    assert "mmspeech-demo" in err and "not for real speech" in err

    # a checkpoint the user named never falls back
    code, _, err = run(capsys, "transcribe", clips / "ru.wav", "--model", "facebook/mms-1b-l1107")
    assert code == 1 and "mms-1b-l1107" in err


def test_lm_decoding_times_the_words_the_lm_chose(capsys, tmp_path, demo, clips):
    pytest.importorskip("kenlm")
    asr, _ = demo
    voice, text, language = CASES[3]
    words = sorted({*text.split(), "gut", "morgens", "wir", "geben", "es", "der", "die", "ist"})
    arpa = tmp_path / "words.arpa"
    write_unigram_arpa(arpa, words, end_prob=0.4)
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("\n".join(words), encoding="utf-8")
    code, out, err = run(
        capsys, "transcribe", clips / f"{voice}.wav", "--model", asr, "-l", language,
        "--lm", arpa, "--lm-lexicon", lexicon, "--word-timestamps", "-f", "json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    chosen = result["text"].split()
    # lexicon words only, the spoken ones but for at most one word wrong or missing (the model
    # hears "wigetes" for "wie geht es": checkpoints have given "wie geht es der" and "wie es dir")
    assert set(chosen) <= set(words)
    edits = jiwer.process_words(text, " ".join(chosen))  # the word alignment WER uses
    assert edits.substitutions + edits.deletions + edits.insertions <= 1, chosen
    timed = [w for segment in result["segments"] for w in segment["words"]]
    assert [w["word"] for w in timed] == chosen
    times = [(w["start"], w["end"]) for w in timed]
    assert all(start < end for start, end in times)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(times))
    assert times[-1][1] - times[0][0] > 0.6 * result["duration"]
    # the word list alone (no model file) is a closed vocabulary: the same words come out
    code, out, err = run(
        capsys, "transcribe", clips / f"{voice}.wav", "--model", asr, "-l", language,
        "--lm-lexicon", lexicon,
    )  # fmt: skip
    assert code == 0, err
    assert out.strip() == result["text"]
