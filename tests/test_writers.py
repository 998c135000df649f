"""Transcript files: exact txt, json, srt, vtt and tsv text."""

from __future__ import annotations

import json

import pytest

from mmspeech.errors import ConfigError
from mmspeech.results import Segment, Transcription, Word
from mmspeech.writers import FORMATS, format_transcription, write_transcription


@pytest.fixture
def transcription():
    words = (Word(0.0, 0.52, "hello", 0.9), Word(0.6, 1.2345, "world", 0.8))
    return Transcription(
        text="hello world bye now",
        language="eng",
        language_probability=0.75,
        duration=3725.5,
        segments=[
            Segment(0, 0.0, 1.2345, "hello world", words),
            Segment(1, 2.0, 2.5, "   "),  # nothing said: left out of subtitles
            Segment(2, 3599.9996, 3725.0004, " bye\n\tnow "),
        ],
    )


def test_txt(transcription):
    assert format_transcription(transcription, "txt") == "hello world\nbye now\n"


def test_srt(transcription):
    assert format_transcription(transcription, "srt") == (
        "1\n00:00:00,000 --> 00:00:01,235\nhello world\n\n"
        "2\n01:00:00,000 --> 01:02:05,000\nbye now\n"
    )


def test_vtt(transcription):
    assert format_transcription(transcription, "vtt") == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:01.235\nhello world\n\n"
        "01:00:00.000 --> 01:02:05.000\nbye now\n"
    )


def test_tsv(transcription):
    assert format_transcription(transcription, "tsv") == (
        "start\tend\ttext\n0\t1235\thello world\n3600000\t3725000\tbye now\n"
    )


def test_json_round_trips_every_field(transcription):
    data = json.loads(format_transcription(transcription, "json"))
    assert data == transcription.to_dict()
    assert data["segments"][0]["words"][1] == {
        "word": "world", "start": 0.6, "end": 1.235, "probability": 0.8
    }  # fmt: skip


def test_long_hours_and_rounding():
    t = Transcription("a b", None, None, 0.0, [Segment(0, 0.0005, 1.0004, "a"),
                                               Segment(1, 360000.0, 360001.9999, "b")])  # fmt: skip
    assert format_transcription(t, "srt") == (
        "1\n00:00:00,001 --> 00:00:01,000\na\n\n2\n100:00:00,000 --> 100:00:02,000\nb\n"
    )
    assert format_transcription(t, "tsv").splitlines()[1:] == [
        "1\t1000\ta",
        "360000000\t360002000\tb",
    ]


def test_empty_transcription():
    t = Transcription("", None, None, 0.0, [])
    assert format_transcription(t, "txt") == ""
    assert format_transcription(t, "srt") == ""
    assert format_transcription(t, "vtt") == "WEBVTT\n"
    assert format_transcription(t, "tsv") == "start\tend\ttext\n"
    assert json.loads(format_transcription(t, "json"))["segments"] == []


def test_text_without_segments_still_writes_txt():
    t = Transcription("just text", None, None, 1.0, [])
    assert format_transcription(t, "txt") == "just text\n"


def test_write_transcription_by_extension_or_format(transcription, tmp_path):
    written = write_transcription(transcription, tmp_path / "out" / "talk.srt")
    assert written == tmp_path / "out" / "talk.srt"
    assert written.read_text(encoding="utf-8") == format_transcription(transcription, "srt")
    other = write_transcription(transcription, tmp_path / "talk.subtitles", fmt="VTT")
    assert other.read_bytes().startswith(b"WEBVTT\n\n")
    assert set(FORMATS) == {"txt", "json", "srt", "vtt", "tsv"}
    accented = Transcription("é", None, None, 1.0, [Segment(0, 0, 1, "é")])
    for fmt in FORMATS:  # every format writes UTF-8 with \n line ends
        path = write_transcription(accented, tmp_path / f"x.{fmt}")
        assert b"\r\n" not in path.read_bytes() and "é" in path.read_text(encoding="utf-8")


def test_unknown_format_is_a_clear_error(transcription, tmp_path):
    with pytest.raises(ConfigError, match="expected one of txt, json, srt, vtt, tsv"):
        format_transcription(transcription, "docx")
    with pytest.raises(ConfigError, match="'mp3'"):
        write_transcription(transcription, tmp_path / "talk.mp3")
