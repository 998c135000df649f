"""Segments cut at pauses of blank frames and never longer than max_segment_s (hand-made frames)."""

from __future__ import annotations

import pytest
import torch

from mmspeech.api.longform import cut_segments
from mmspeech.ctc.decode import greedy_spans, spans_to_words

VOCAB = {0: "<pad>", 1: "|", 2: "a", 3: "b"}
STEP = 0.02  # seconds per frame


def frames(labels: str) -> torch.Tensor:
    """``(T, 4)`` log-probs whose best label per frame is spelt by ``labels`` ('_' blank)."""
    ids = [{"_": 0, "|": 1, "a": 2, "b": 3}[c] for c in labels]
    logits = torch.full((len(ids), 4), -4.0)
    logits[torch.arange(len(ids)), torch.tensor(ids)] = 4.0
    return torch.log_softmax(logits, dim=-1)


def words_of(log_probs, offset_s):
    return spans_to_words(greedy_spans(log_probs, 0), VOCAB, "|", STEP, offset_s)


def cut(labels: str, chunk: int | None = None, **settings):
    log_probs = frames(labels)
    chunks = [log_probs] if chunk is None else list(log_probs.split(chunk))
    settings = {"min_silence_s": 0.5, "max_segment_s": 30.0} | settings
    pieces = cut_segments(
        chunks, words_of, offset_s=1.0, seconds_per_frame=STEP, silence_ids={0, 1}, **settings
    )
    return [(round(p.offset_s, 6), len(p.log_probs), " ".join(w.text for w in p.words))
            for p in pieces]  # fmt: skip


def test_a_pause_of_blanks_ends_a_segment_without_any_delimiter():
    labels = "__aa_b" + "_" * 30 + "ab__a" + "_" * 10
    assert cut(labels) == [
        (1.04, 4, "ab"),  # leading silence belongs to no segment
        (1.72, 5, "aba"),  # what was one "word" across the 0.6 s pause is two
    ]


def test_a_short_pause_does_not_cut_and_delimiters_count_as_silence():
    assert [text for *_, text in cut("ab" + "_" * 20 + "ab")] == ["abab"]  # 0.4 s < 0.5 s
    assert [text for *_, text in cut("ab" + "_|" * 13 + "ab")] == ["ab", "ab"]  # 0.52 s


@pytest.mark.parametrize("chunk", [None, 1, 7, 40])
def test_cuts_do_not_depend_on_how_the_frames_arrive(chunk):
    labels = ("ab_a|b" * 10 + "_" * 40) * 3 + "ba"
    assert cut(labels, chunk, max_segment_s=0.5) == cut(labels, None, max_segment_s=0.5)


def test_no_segment_exceeds_max_segment_and_cuts_prefer_late_pauses():
    labels = "ab|ab__ab|ab_ab|abab" * 8  # 160 frames, no long pause
    pieces = cut(labels, chunk=13, max_segment_s=0.5)  # 25 frames
    assert len(pieces) > 1 and all(length <= 25 for _, length, _ in pieces)
    assert "".join(text.replace(" ", "") for *_, text in pieces) == "ab" * 7 * 8
    for offset, length, _ in pieces[:-1]:  # every cut is at a pause (a word boundary)
        assert labels[round((offset - 1.0) / STEP) + length] in "_|"
    assert pieces[0][1] == 25  # of equal pauses, the latest that fits


def test_without_any_pause_the_cut_is_at_the_limit():
    pieces = cut("ab" * 50, chunk=9, max_segment_s=0.3)  # 15 frames
    assert [length for _, length, _ in pieces] == [15] * 6 + [10]
    assert [offset for offset, *_ in pieces] == [round(1.0 + i * 0.3, 6) for i in range(7)]


def test_silence_only_gives_no_segment():
    assert cut("_" * 100, chunk=30) == []
