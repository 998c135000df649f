"""Transcripts shaped as people use them, on espeak-ng speech with the bundled demo checkpoints:
a segment per sentence at pauses, max_segment_s enforced on long audio, honest scores (worse on
noise than on speech, and no text at all for noise), language decisions made visible,
whisper's JSON keys."""

from __future__ import annotations

import itertools
import json
import math
import re

import numpy as np
import pytest
import soundfile as sf
from conftest import build_lid_checkpoint, espeak

from mmspeech.api.asr import load_asr
from mmspeech.api.options import TranscribeOptions
from mmspeech.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

PAUSE_S = 1.2
SENTENCES = {
    "eng": ("en", ["the quick brown fox jumps over the lazy dog", "she sells sea shells",
                   "we will meet after lunch today", "please call me back tomorrow"]),
    "deu": ("de", ["guten morgen wie geht es dir", "ich habe heute keine zeit",
                   "das wetter ist sehr schön", "wir sehen uns morgen"]),
    "fra": ("fr", ["bonjour comment allez vous", "il fait très beau aujourd'hui",
                   "nous allons au marché", "à demain mes amis"]),
    "spa": ("es", ["hola como estas hoy", "me gusta mucho la música",
                   "vamos a la playa mañana", "hasta luego amigo"]),
}  # fmt: skip


@pytest.fixture(scope="module")
def asr(demo):
    return load_asr(demo[0], device="cpu")


def with_pauses(voice: str, sentences: list[str]) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The sentences spoken with PAUSE_S of digital silence between them, and the pauses."""
    parts, pauses, at = [], [], 0.0
    pause = np.zeros(int(PAUSE_S * 16_000), dtype=np.float32)
    for i, sentence in enumerate(sentences):
        audio = espeak(sentence, voice)
        parts.append(audio)
        at += len(audio) / 16_000
        if i + 1 < len(sentences):
            parts.append(pause)
            pauses.append((at, at + PAUSE_S))
            at += PAUSE_S
    return np.concatenate(parts), pauses


@pytest.mark.parametrize("language", sorted(SENTENCES))
def test_one_segment_per_sentence_with_a_boundary_inside_every_pause(asr, language):
    voice, sentences = SENTENCES[language]
    audio, pauses = with_pauses(voice, sentences)
    result = asr.transcribe(audio, language, word_timestamps=True)
    segments = result.segments
    assert len(segments) == len(sentences), [s.text for s in segments]
    for (before, after), (pause_start, pause_end) in zip(
        itertools.pairwise(segments), pauses, strict=True
    ):
        assert before.end <= pause_end and after.start >= pause_start
        assert before.end - 0.25 <= pause_start and after.start + 0.25 >= pause_end
    for segment in segments:  # scores from the posteriors: finite and in range
        assert segment.avg_logprob is not None and -5.0 < segment.avg_logprob <= 0.0
        assert segment.no_speech_prob is not None and 0.0 <= segment.no_speech_prob < 0.8
        assert segment.compression_ratio is not None and 0.5 < segment.compression_ratio < 2.4


def test_no_segment_is_longer_than_max_segment_on_three_minutes(asr):
    text = (
        "in the beginning the town was small, and the people who lived there knew each other "
        "by name. they met at the market every morning and talked about the weather"
    )
    audio = espeak(text, "en", seconds=180.0)
    assert len(audio) >= 180 * 16_000
    emissions = list(asr.emissions(audio))  # once; then cut two ways
    asr.set_language("eng")
    for limit in (30.0, 10.0, 4.0):
        options = TranscribeOptions(max_segment_s=limit)
        pieces = list(asr._pieces(iter(emissions), 0.0, options))
        segments = list(asr._to_segments(iter(pieces), True, options))
        longest = max(s.end - s.start for s in segments)
        assert longest <= limit + 1e-6, (limit, longest)
        assert all(a.end <= b.start for a, b in itertools.pairwise(segments))
        if limit == 4.0:
            assert longest > 3.0  # the limit binds: speech runs longer than 4 s without pauses


def test_noise_gives_no_segments_and_the_threshold_calls_it_not_speech(asr):
    voice, sentences = SENTENCES["eng"]
    speech_audio = with_pauses(voice, sentences)[0]
    speech = asr.transcribe(speech_audio, "eng")
    for segment in speech.segments:  # scores of speech: CTC speech is itself half blanks
        assert -5.0 < segment.avg_logprob <= 0.0 and 0.0 <= segment.no_speech_prob < 0.8
    rng = np.random.default_rng(0)
    noise_audio = (0.1 * rng.standard_normal(4 * 16_000)).astype(np.float32)
    # the demo model learnt non-speech (build_corpus.py's noise clips): it writes nothing for
    # noise (before, it wrote letters there and only the blank mass told noise from speech)
    noise = asr.transcribe(noise_audio, "eng")
    assert not noise.segments and noise.text == ""
    assert noise.warnings == ("No speech was recognised in the audio.",)
    # a threshold between speech's blank mass and noise's (all blank) keeps the speech and
    # says the noise is not speech
    options = TranscribeOptions(no_speech_threshold=0.9)
    kept = asr.transcribe(speech_audio, "eng", options=options)
    assert len(kept.segments) == len(sentences) and not kept.warnings
    dropped = asr.transcribe(noise_audio, "eng", options=options)
    assert not dropped.segments and dropped.text == ""
    [warning] = dropped.warnings
    assert "most likely not speech" in warning


def test_json_uses_whisper_keys_and_millisecond_times(asr):
    audio, _ = with_pauses("en", SENTENCES["eng"][1][:2])
    data = asr.transcribe(audio, "eng", word_timestamps=True).to_dict()
    word = data["segments"][0]["words"][0]
    assert set(word) == {"word", "start", "end", "probability"}
    assert data["language"] == "eng" and data["language_iso639_1"] == "en"
    times = [data["duration"]] + [s[k] for s in data["segments"] for k in ("start", "end")]
    times += [w[k] for s in data["segments"] for w in s["words"] for k in ("start", "end")]
    assert all(round(t, 3) == t and len(repr(t).split(".")[-1]) <= 3 for t in times)
    segment = data["segments"][0]
    assert all(math.isfinite(segment[k]) for k in ("avg_logprob", "no_speech_prob"))


@pytest.mark.oracle  # the LID checkpoint is built by transformers
def test_a_language_without_an_adapter_is_reported_with_both_probabilities(asr, tmp_path):
    # a language-ID model that hears Italian, which the demo ASR checkpoint has no adapter for
    lid = build_lid_checkpoint(tmp_path / "lid-ita", favour="ita", labels=("eng", "ita", "fra"))
    options = TranscribeOptions(lid_model=str(lid))
    result = asr.transcribe(espeak("buongiorno come stai oggi amico mio", "it"), options=options)
    assert result.language in {"eng", "fra"}
    detection = result.detection
    assert detection is not None and detection.unsupported is not None
    assert detection.unsupported.code == "ita" and detection.unsupported.probability > 0.9
    [warning] = result.warnings
    assert "Italian (ita" in warning and f"using {detection.scores[0].name}" in warning
    data = result.to_dict()
    assert data["language_detection"]["unsupported"]["code"] == "ita"
    assert data["warnings"] == [warning]


def test_a_clip_too_short_to_judge_is_flagged(asr, demo):
    options = TranscribeOptions(lid_model=str(demo[1]))
    result = asr.transcribe(espeak("hello there", "en")[:1600], options=options)  # 0.1 s
    assert result.detection is not None and result.detection.low_confidence
    assert any("0.10 s" in warning for warning in result.warnings)
    long_enough = asr.transcribe(with_pauses("en", SENTENCES["eng"][1][:1])[0], options=options)
    assert not long_enough.detection.low_confidence and not long_enough.warnings


def test_cli_says_which_language_it_detected(capsys, demo, tmp_path):
    asr_dir, lid_dir = demo
    path = tmp_path / "fr.wav"
    sf.write(path, espeak("bonjour comment allez vous aujourd'hui", "fr"), 16_000)
    code = main(["transcribe", str(path), "--model", str(asr_dir), "--lid-model", str(lid_dir)])
    out, err = capsys.readouterr()
    assert code == 0 and out.strip()
    [line] = [line for line in err.splitlines() if line.startswith("Detected language")]
    assert re.fullmatch(r"Detected language: French \(fra, [01]\.\d\d\)", line), line
    main(["transcribe", str(path), "--model", str(asr_dir), "--lid-model", str(lid_dir), "-q"])
    assert "Detected" not in capsys.readouterr().err


def test_cli_subtitle_options_shape_the_cues(capsys, demo, tmp_path):
    import pysubs2

    asr_dir = demo[0]
    audio, _ = with_pauses("en", SENTENCES["eng"][1])
    path = tmp_path / "en.wav"
    sf.write(path, audio, 16_000)
    args = ["transcribe", str(path), "--model", str(asr_dir), "-l", "eng", "-q", "-f", "srt"]
    assert main([*args, "--max-line-width", "16", "--max-line-count", "2"]) == 0
    subs = pysubs2.SSAFile.from_string(capsys.readouterr().out, format_="srt")
    assert len(subs) >= 4
    for event in subs:
        lines = event.plaintext.split("\n")
        assert len(lines) <= 2 and all(len(line) <= 16 or " " not in line for line in lines)
        assert 0 <= event.start < event.end <= len(audio) / 16
    assert all(a.end <= b.start for a, b in itertools.pairwise(subs))
    assert main([*args, "--max-line-count", "0"]) == 2
    assert "--max-line-count" in capsys.readouterr().err


def test_identify_flags_a_clip_too_short_to_judge(capsys, demo, tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, espeak("hello there", "en")[:1600], 16_000)
    assert main(["identify", str(path), "--model", str(demo[1]), "-f", "json"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data["low_confidence"] is True and "0.10 s" in data["warnings"][0]
    assert "Warning: Only 0.10 s" in err
    assert data["language_iso639_1"] == {"eng": "en", "deu": "de", "fra": "fr", "rus": "ru",
                                         "spa": "es", "ell": "el"}[data["language"]]  # fmt: skip
