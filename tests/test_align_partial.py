"""Aligning a transcript that covers part of the audio (demo checkpoint, espeak-ng speech): the
<star> wildcard puts its words where they are spoken; a transcript that does not match warns."""

from __future__ import annotations

import json

import pytest
import soundfile as sf
from conftest import espeak

from mmspeech.api.align import align_words
from mmspeech.api.asr import load_asr
from mmspeech.api.options import AlignOptions
from mmspeech.cli import main
from mmspeech.demo import demo_checkpoint
from mmspeech.errors import CheckpointNotFoundError

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

CASES = [  # voice, language, what is said, the part given, the index of its first word
    ("ru", "rus", "привет как дела у тебя сегодня", "дела у", 2),
    ("en", "eng", "the quick brown fox jumps over the lazy dog", "dog", 8),
    ("de", "deu", "guten morgen wie geht es dir", "wie geht", 2),
    ("fr", "fra", "bonjour comment allez vous aujourd'hui", "allez vous", 2),
]


@pytest.fixture(scope="module")
def asr():
    try:
        return load_asr(demo_checkpoint("asr"), device="cpu")
    except CheckpointNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize(("voice", "language", "text", "part", "first"), CASES)
def test_a_partial_transcript_aligns_where_it_is_spoken(asr, voice, language, text, part, first):
    audio = espeak(text, voice)
    whole = align_words(asr, audio, text, language)
    assert not whole.warnings and whole.score > 0.4
    expected = whole.words[first : first + len(part.split())]
    partial = align_words(asr, audio, part, language, AlignOptions(wildcard=True))
    assert not partial.warnings
    for word, reference in zip(partial.words, expected, strict=True):
        assert word.text == reference.text
        assert abs(word.start - reference.start) <= 0.1 and abs(word.end - reference.end) <= 0.1
    # without the wildcard the words are stretched over the audio, and the result says so
    plain = align_words(asr, audio, part, language)
    assert plain.score < 0.2 and "--partial" in plain.warnings[0]


def test_a_transcript_of_other_words_warns(asr):
    audio = espeak("the quick brown fox jumps over the lazy dog", "en")
    for wildcard in (False, True):
        result = align_words(
            asr, audio, "completely different words here", "eng", AlignOptions(wildcard=wildcard)
        )
        assert result.score < 0.2
        [warning] = result.warnings
        assert "matches the audio poorly" in warning
        assert result.to_dict()["warnings"] == [warning]


def test_cli_partial(capsys, tmp_path):
    try:
        model = demo_checkpoint("asr")
    except CheckpointNotFoundError as exc:
        pytest.skip(str(exc))
    path = tmp_path / "ru.wav"
    sf.write(path, espeak("привет как дела у тебя сегодня", "ru"), 16_000)
    args = ["align", str(path), "-t", "дела у", "-l", "rus", "--model", str(model)]
    assert main([*args, "--partial"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert [w["word"] for w in data["words"]] == ["дела", "у"] and "Warning" not in err
    assert 0.6 < data["words"][0]["start"] < 0.85
    assert main(args) == 0
    assert "Warning: The transcript matches the audio poorly" in capsys.readouterr().err
