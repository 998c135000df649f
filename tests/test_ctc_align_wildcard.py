"""The <star> wildcard of forced alignment and the alignment score, on hand-built emissions."""

from __future__ import annotations

import pytest
import torch

from mmspeech.ctc import forced_align
from mmspeech.ctc.align import alignment_score

BLANK = 0


def peaky(path: list[int], vocab: int = 5, peak: float = 0.9) -> torch.Tensor:
    """(T, V) log-probs with ``peak`` on the given label per frame, the rest shared evenly."""
    probs = torch.full((len(path), vocab), (1.0 - peak) / (vocab - 1))
    probs[torch.arange(len(path)), torch.tensor(path)] = peak
    return probs.log()


# "3 4" is said, then "1 2" (frames 8-11), then "4 3": the transcript is only "1 2"
SPOKEN = [0, 3, 3, 0, 4, 4, 0, 0, 1, 1, 0, 2, 2, 0, 4, 0, 3, 3, 0]


def test_the_wildcard_lets_a_partial_transcript_land_where_it_is_spoken():
    log_probs = peaky(SPOKEN)
    spans = forced_align(log_probs, [1, 2], BLANK, wildcard=True)
    assert [(s.token_id, s.start_frame, s.end_frame) for s in spans] == [(1, 8, 10), (2, 11, 13)]
    assert all(s.probability == pytest.approx(0.9) for s in spans)  # of the real labels


def test_the_wildcard_changes_little_for_a_whole_transcript():
    log_probs = peaky(SPOKEN)
    whole = [3, 4, 1, 2, 4, 3]
    plain = forced_align(log_probs, whole, BLANK)
    starred = forced_align(log_probs, whole, BLANK, wildcard=True)
    assert [s.token_id for s in starred] == whole
    for a, b in zip(plain, starred, strict=True):  # the star takes a frame at each end at most
        assert abs(a.start_frame - b.start_frame) <= 1 and abs(a.end_frame - b.end_frame) <= 1


def test_alignment_score_is_high_when_the_transcript_is_heard_and_low_when_not():
    log_probs = peaky(SPOKEN)
    whole = forced_align(log_probs, [3, 4, 1, 2, 4, 3], BLANK)
    assert alignment_score(log_probs, whole, BLANK) == pytest.approx(1.0)
    partial = forced_align(log_probs, [1, 2], BLANK, wildcard=True)
    assert alignment_score(log_probs, partial, BLANK, wildcard=True) == pytest.approx(1.0)
    # without the wildcard the other words' frames are forced to the blank
    stretched = forced_align(log_probs, [1, 2], BLANK)
    assert alignment_score(log_probs, stretched, BLANK) < 0.5
    wrong = forced_align(log_probs, [2, 1, 2, 1], BLANK)
    assert alignment_score(log_probs, wrong, BLANK) < 0.5
    assert alignment_score(log_probs, [], BLANK) == 0.0
