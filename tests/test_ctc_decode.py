"""Greedy CTC spans and timed words on hand-built emissions, and the tokenizer sharing the runs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from mmspeech.ctc import TokenSpan, greedy_spans, spans_to_words
from mmspeech.ctc.decode import runs, split_words
from mmspeech.errors import ConfigError
from mmspeech.results import Word

LABELS = ["<pad>", "|", "a", "b", "c"]
ID_TO_TOKEN = dict(enumerate(LABELS))
IDS = {token: i for i, token in enumerate(LABELS)}


def emissions(path: list[str], peak: float = 0.9) -> np.ndarray:
    """(T, V) log-probs whose best label per frame follows ``path`` with probability ``peak``."""
    rest = (1.0 - peak) / (len(LABELS) - 1)
    probs = np.full((len(path), len(LABELS)), rest)
    probs[np.arange(len(path)), [IDS[token] for token in path]] = peak
    return np.log(probs)


def test_runs_and_split_words():
    assert runs([]) == []
    assert runs([1, 1, 0, 2, 2, 2, 1]) == [(1, 0, 2), (0, 2, 3), (2, 3, 6), (1, 6, 7)]
    assert split_words(list("|ab||c|"), lambda c: c == "|") == [["a", "b"], ["c"]]


def test_greedy_spans_collapse_repeats_and_drop_blanks():
    path = ["<pad>", "a", "a", "<pad>", "a", "b", "|", "|", "c", "c", "c", "<pad>"]
    spans = greedy_spans(emissions(path), blank_id=0)
    assert [(LABELS[s.token_id], s.start_frame, s.end_frame) for s in spans] == [
        ("a", 1, 3), ("a", 4, 5), ("b", 5, 6), ("|", 6, 8), ("c", 8, 11)
    ]  # fmt: skip
    assert all(s.probability == pytest.approx(0.9) for s in spans)


def test_span_probability_is_the_mean_of_its_frame_probabilities():
    log_probs = np.log(np.array([[0.1, 0.0, 0.9, 0.0, 0.0], [0.4, 0.0, 0.6, 0.0, 0.0]]) + 1e-12)
    (span,) = greedy_spans(torch.from_numpy(log_probs), blank_id=0)
    assert span == TokenSpan(IDS["a"], 0, 2, pytest.approx(0.75))
    # Logits work too: they are normalised first.
    logits = torch.tensor([[0.0, 0.0, math.log(8.0), 0.0, 0.0]])
    assert greedy_spans(logits, blank_id=0)[0].probability == pytest.approx(8 / 12)


def test_all_blank_and_empty_inputs_decode_to_nothing():
    assert greedy_spans(emissions(["<pad>"] * 5), blank_id=0) == []
    assert greedy_spans(np.zeros((0, 5), dtype=np.float32), blank_id=0) == []
    assert spans_to_words([], ID_TO_TOKEN, seconds_per_frame=0.02) == []


def test_words_have_times_in_seconds_and_mean_probabilities():
    path = ["<pad>", "a", "b", "<pad>", "|", "|", "c", "<pad>", "c", "|", "<pad>"]
    probs = np.full((len(path), len(LABELS)), 0.05)
    probs[np.arange(len(path)), [IDS[t] for t in path]] = 0.8
    probs[2] = [0.1, 0.1, 0.1, 0.6, 0.1]  # "b" at 0.6
    spans = greedy_spans(np.log(probs + 1e-12), blank_id=0)
    words = spans_to_words(spans, ID_TO_TOKEN, "|", seconds_per_frame=0.02, offset_s=10.0)
    assert [w.text for w in words] == ["ab", "cc"]
    assert words[0].start == pytest.approx(10.02) and words[0].end == pytest.approx(10.06)
    assert words[1].start == pytest.approx(10.12) and words[1].end == pytest.approx(10.18)
    assert words[0].probability == pytest.approx((0.8 + 0.6) / 2)
    assert words[1].probability == pytest.approx(0.8)
    assert all(isinstance(w, Word) for w in words)


def test_words_are_monotonic_and_inside_the_audio():
    rng = np.random.default_rng(0)
    path = [LABELS[i] for i in rng.integers(0, len(LABELS), 500)]
    words = spans_to_words(greedy_spans(emissions(path), 0), ID_TO_TOKEN, seconds_per_frame=0.02)
    assert len(words) > 10
    duration = len(path) * 0.02
    for before, after in itertools.pairwise(words):
        assert before.start < before.end <= after.start
    assert words[0].start >= 0.0 and words[-1].end <= duration + 1e-9


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ConfigError, match="shape \\(frames, vocab\\)"):
        greedy_spans(np.zeros(5), blank_id=0)
    with pytest.raises(ConfigError, match="blank_id=9"):
        greedy_spans(emissions(["a"]), blank_id=9)
    with pytest.raises(ConfigError, match="not in the vocabulary"):
        spans_to_words([TokenSpan(7, 0, 1, 1.0)], ID_TO_TOKEN)
