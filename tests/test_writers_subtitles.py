"""Subtitle shaping like whisper's writers: line width, line count, words per line, karaoke cues;
cues never overlap and stay within the audio; the files parse with pysubs2."""

from __future__ import annotations

import itertools

import pysubs2
import pytest

from mmspeech.errors import ConfigError
from mmspeech.results import Segment, Transcription, Word
from mmspeech.writers import SubtitleOptions, cues, format_transcription


def timed(text: str, start: float, step: float = 0.4) -> tuple[Word, ...]:
    return tuple(
        Word(start + i * step, start + i * step + 0.3, word, 0.9)
        for i, word in enumerate(text.split())
    )


@pytest.fixture
def transcription():
    first = "the quick brown fox jumps over the lazy dog"
    second = "she sells sea shells"
    return Transcription(
        f"{first} {second}",
        "eng",
        None,
        6.0,
        [
            Segment(0, 0.0, 3.5, first, timed(first, 0.0)),
            # overlaps the first and runs past the end of the audio: clipped
            Segment(1, 3.2, 6.5, second, timed(second, 3.2, 0.9)),
        ],
    )


def parse(text: str, fmt: str) -> pysubs2.SSAFile:
    return pysubs2.SSAFile.from_string(text, format_=fmt)


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_line_width_and_count(transcription, fmt):
    options = SubtitleOptions(max_line_width=16, max_line_count=2)
    subs = parse(format_transcription(transcription, fmt, options), fmt)
    lines = [event.plaintext.split("\n") for event in subs]
    assert lines[:2] == [["the quick brown", "fox jumps over"], ["the lazy dog"]]
    assert all(len(cue) <= 2 and all(len(line) <= 16 for line in cue) for cue in lines)
    words = " ".join(" ".join(cue) for cue in lines).split()
    assert words == transcription.text.split()  # nothing lost, nothing repeated
    assert subs[0].start == 0 and subs[0].end == 2300  # first word start → last word end (ms)


def test_words_per_line_without_a_line_count_makes_one_cue_per_segment(transcription):
    subs = parse(
        format_transcription(transcription, "srt", SubtitleOptions(max_words_per_line=3)), "srt"
    )
    assert [event.plaintext for event in subs] == [
        "the quick brown\nfox jumps over\nthe lazy dog",
        "she sells sea\nshells",
    ]


@pytest.mark.parametrize("options", [SubtitleOptions(), SubtitleOptions(max_line_width=10),
                                     SubtitleOptions(highlight_words=True)])  # fmt: skip
def test_cues_never_overlap_and_stay_within_the_audio(transcription, options):
    for fmt in ("srt", "vtt"):
        subs = parse(format_transcription(transcription, fmt, options), fmt)
        assert len(subs) >= 2
        assert all(0 <= e.start <= e.end <= 6000 for e in subs)
        assert all(a.end <= b.start for a, b in itertools.pairwise(subs))


def test_highlight_words_gives_one_karaoke_cue_per_word(transcription):
    text = format_transcription(transcription, "vtt", SubtitleOptions(highlight_words=True))
    subs = parse(text, "vtt")
    assert len(subs) == len(transcription.text.split())
    assert "<u>the</u> quick brown fox" in text and "she sells sea <u>shells</u>" in text
    first = transcription.segments[0].words
    assert subs[1].start == round(first[1].start * 1000)  # the cue starts as its word is said
    assert subs[0].end == subs[1].start  # and lasts until the next word


def test_shaping_needs_word_timestamps():
    t = Transcription("hello", "eng", None, 1.0, [Segment(0, 0.0, 1.0, "hello")])
    with pytest.raises(ConfigError, match="word timestamps"):
        cues(t, SubtitleOptions(max_line_width=20))
    assert [c.text for c in cues(t)] == ["hello"]


@pytest.mark.parametrize("name", ["max_line_width", "max_line_count", "max_words_per_line"])
def test_bad_line_options_are_errors(name):
    with pytest.raises(ConfigError, match=name):
        SubtitleOptions(**{name: 0})
