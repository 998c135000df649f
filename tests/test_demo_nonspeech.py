"""The bundled demo checkpoints on non-speech, as real MMS models behave: blanks and word
delimiters at pauses (a segment boundary inside each pause, nothing written in a sentence-final
pause) and no letters at all on noise (trained on build_corpus.py's pauses and noise clips).

The speech is espeak-ng reading everyday sentences (not the corpus's random words); the noise
comes from ffmpeg's generators (not the numpy ones the corpus used) through a file."""

from __future__ import annotations

import itertools
import shutil
import subprocess

import numpy as np
import pytest
from conftest import espeak

from mmspeech.api.asr import load_asr

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

SENTENCES = {
    "eng": ("en", ["good morning to all of you", "the children are playing outside",
                   "my brother works in a large city"]),
    "deu": ("de", ["der zug kommt heute später", "meine schwester wohnt in berlin",
                   "wir trinken einen kaffee"]),
    "spa": ("es", ["buenos días a todos", "los niños juegan en el parque",
                   "mi hermano vive en la ciudad"]),
    "rus": ("ru", ["доброе утро друзья", "дети играют во дворе", "мой брат живёт в городе"]),
}  # fmt: skip
PAUSES_S = (0.7, 1.0)  # between the sentences
FINAL_PAUSE_S = 1.0  # after the last one
FLOOR = 10 ** (-55 / 20)  # a faint white-noise floor under everything (-55 dB full scale)


@pytest.fixture(scope="module")
def asr(demo):
    return load_asr(demo[0], device="cpu")


def trimmed(audio: np.ndarray) -> np.ndarray:
    """espeak-ng's speech without its own leading and trailing silence."""
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[loud[0] : loud[-1] + 1]


def spoken_with_pauses(voice: str, sentences: list[str]) -> tuple[np.ndarray, list, float]:
    """(audio, [(pause start, pause end)], end of the speech) with exact silences."""
    parts, pauses, at = [], [], 0.0
    for sentence, pause in zip(sentences, (*PAUSES_S, FINAL_PAUSE_S), strict=True):
        speech = trimmed(espeak(sentence, voice))
        parts += [speech, np.zeros(int(pause * 16_000), np.float32)]
        at += len(speech) / 16_000
        pauses.append((at, at + pause))
        at += pause
    audio = np.concatenate(parts)
    audio += (FLOOR * np.random.default_rng(0).standard_normal(len(audio))).astype(np.float32)
    return audio, pauses[:-1], pauses[-1][0]


@pytest.mark.parametrize("language", sorted(SENTENCES))
def test_a_segment_boundary_inside_each_pause_and_nothing_after_the_last_sentence(asr, language):
    voice, sentences = SENTENCES[language]
    audio, pauses, speech_end = spoken_with_pauses(voice, sentences)
    result = asr.transcribe(audio, language)
    segments = result.segments
    assert len(segments) == len(sentences), [s.text for s in segments]
    for (before, after), (pause_start, pause_end) in zip(
        itertools.pairwise(segments), pauses, strict=True
    ):
        assert pause_start - 0.25 <= before.end <= pause_end, (before, pause_start)
        assert pause_start <= after.start <= pause_end + 0.25, (after, pause_end)
    assert segments[-1].end <= speech_end + 0.25  # the final pause is left blank


def ffmpeg_noise(source: str, path) -> np.ndarray:
    """4 s of an ffmpeg lavfi source, written to a 16 kHz WAV file and read back."""
    from mmspeech.audio import load_audio

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", source, "-t", "4", "-ar", "16000",
         "-ac", "1", "-y", str(path)],
        check=True,
    )  # fmt: skip
    return load_audio(path)


NOISES = {
    "brown": "anoisesrc=color=brown:amplitude=0.3:seed=1",
    "pink": "anoisesrc=color=pink:amplitude=0.05:seed=2",
    "white": "anoisesrc=color=white:amplitude=0.1:seed=3",
    "hum": "aevalsrc=0.2*sin(2*PI*50*t)+0.08*sin(2*PI*150*t)+0.04*sin(2*PI*250*t)",
}


@pytest.mark.parametrize("noise", sorted(NOISES))
def test_noise_gives_no_text_in_any_language(asr, noise, tmp_path):
    audio = ffmpeg_noise(NOISES[noise], tmp_path / f"{noise}.wav")
    for language in ("eng", "fra", "deu", "spa", "rus", "ell"):
        result = asr.transcribe(audio, language)
        assert result.text == "" and not result.segments, (language, result.text)
        assert result.warnings == ("No speech was recognised in the audio.",)
