"""CTC forced alignment: known paths on hand-built emissions, brute force, and ctc_loss bounds."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from mmspeech.ctc import forced_align, min_frames, viterbi_path
from mmspeech.ctc.decode import runs
from mmspeech.errors import AlignmentError, MmspeechError

BLANK = 0


def peaky(path: list[int], vocab: int = 5, peak: float = 0.9) -> torch.Tensor:
    """(T, V) log-probs with ``peak`` on the given label per frame, the rest shared evenly."""
    probs = torch.full((len(path), vocab), (1.0 - peak) / (vocab - 1))
    probs[torch.arange(len(path)), torch.tensor(path)] = peak
    return probs.log()


def collapse(path: tuple[int, ...]) -> list[int]:
    return [token for token, _, _ in runs(path) if token != BLANK]


def test_alignment_lands_where_the_emissions_put_the_tokens():
    log_probs = peaky([0, 1, 1, 0, 0, 2, 0, 3, 3, 3, 0])
    spans = forced_align(log_probs, [1, 2, 3], blank_id=BLANK)
    assert [(s.token_id, s.start_frame, s.end_frame) for s in spans] == [
        (1, 1, 3), (2, 5, 6), (3, 7, 10)
    ]  # fmt: skip
    assert all(s.probability == pytest.approx(0.9) for s in spans)


def test_alignment_follows_the_transcript_not_the_greedy_path():
    # The emissions favour token 4 on frames 3-4, but the transcript says 1 2: token 2 must take
    # frames where it is least unlikely, and 4 never appears.
    log_probs = peaky([1, 1, 0, 4, 4, 0])
    spans = forced_align(log_probs, [1, 2], blank_id=BLANK)
    assert [s.token_id for s in spans] == [1, 2]
    assert (spans[0].start_frame, spans[0].end_frame) == (0, 2)
    assert 3 <= spans[1].start_frame < spans[1].end_frame <= 5  # on the frames of the 4s
    assert spans[1].probability == pytest.approx(0.025)


def test_repeated_tokens_need_a_blank_between_them():
    assert min_frames([1, 1]) == 3 and min_frames([1, 2, 2, 2]) == 6 and min_frames([3]) == 1
    spans = forced_align(peaky([1, 0, 1]), [1, 1], blank_id=BLANK)
    assert [(s.start_frame, s.end_frame) for s in spans] == [(0, 1), (2, 3)]
    # Exactly enough frames even when the emissions disagree: the path is forced.
    spans = forced_align(peaky([2, 2, 2]), [1, 1], blank_id=BLANK)
    assert [(s.start_frame, s.end_frame) for s in spans] == [(0, 1), (2, 3)]
    with pytest.raises(AlignmentError, match=r"at least 3 frames .* only 2"):
        forced_align(peaky([1, 1]), [1, 1], blank_id=BLANK)


def test_bad_transcripts_are_clear_errors():
    log_probs = peaky([0, 1, 2, 0])
    with pytest.raises(AlignmentError, match="empty"):
        forced_align(log_probs, [], blank_id=BLANK)
    with pytest.raises(AlignmentError, match=r"\[7\] are not alignable .* \[0, 5\)"):
        forced_align(log_probs, [1, 7], blank_id=BLANK)
    with pytest.raises(AlignmentError, match="other than the blank"):
        forced_align(log_probs, [1, BLANK], blank_id=BLANK)
    with pytest.raises(AlignmentError, match="too long"):
        forced_align(log_probs, [1, 2, 3, 4, 1], blank_id=BLANK)
    with pytest.raises(MmspeechError):  # a 2-D target is not a transcript
        forced_align(log_probs, [[1, 2]], blank_id=BLANK)


@pytest.mark.parametrize("seed", range(6))
def test_viterbi_equals_brute_force_on_tiny_cases(seed):
    rng = np.random.default_rng(seed)
    frames, vocab = 6, 3
    log_probs = torch.from_numpy(rng.standard_normal((frames, vocab))).log_softmax(-1)
    targets = [[1, 2], [1, 1], [2], [1, 2, 1], [2, 2, 1], [1, 1, 1]][seed]
    best, best_path, total = -math.inf, None, -math.inf
    for path in itertools.product(range(vocab), repeat=frames):
        if collapse(path) == targets:
            score = float(log_probs[torch.arange(frames), torch.tensor(path)].sum())
            total = float(np.logaddexp(total, score))
            if score > best:
                best, best_path = score, path
    states, score = viterbi_path(log_probs, targets, blank_id=BLANK)
    assert score == pytest.approx(best, abs=1e-5)
    labels = [BLANK if s % 2 == 0 else targets[(s - 1) // 2] for s in states]
    assert tuple(labels) == best_path
    # The sum over all paths is what ctc_loss computes: the best path is at most that.
    loss = torch.nn.functional.ctc_loss(log_probs[:, None], torch.tensor([targets]),
                                        torch.tensor([frames]), torch.tensor([len(targets)]),
                                        blank=BLANK, reduction="sum")  # fmt: skip
    assert -float(loss) == pytest.approx(total, abs=1e-4)
    assert score <= -float(loss) + 1e-6


def test_longer_random_alignment_is_consistent_with_ctc_loss():
    generator = torch.Generator().manual_seed(0)
    frames, vocab = 400, 30
    log_probs = torch.randn(frames, vocab, generator=generator).mul(3).log_softmax(-1)
    targets = torch.randint(1, vocab, (120,), generator=generator)
    targets[10] = targets[11]  # a repeat
    states, score = viterbi_path(log_probs, targets, blank_id=BLANK)
    assert np.all(np.diff(states) >= 0) and np.all(np.diff(states) <= 2)
    assert states[0] in (0, 1) and states[-1] in (2 * len(targets), 2 * len(targets) - 1)
    labels = torch.tensor([BLANK if s % 2 == 0 else int(targets[(s - 1) // 2]) for s in states])
    assert score == pytest.approx(float(log_probs[torch.arange(frames), labels].sum()), abs=1e-3)
    loss = torch.nn.functional.ctc_loss(log_probs[:, None], targets[None], torch.tensor([frames]),
                                        torch.tensor([len(targets)]), blank=BLANK)  # fmt: skip
    assert score <= -float(loss) * len(targets)  # reduction="mean" divides by the target length
    spans = forced_align(log_probs, targets, blank_id=BLANK)
    assert [s.token_id for s in spans] == targets.tolist()
    for before, after in itertools.pairwise(spans):
        assert before.start_frame < before.end_frame <= after.start_frame
    assert spans[0].start_frame >= 0 and spans[-1].end_frame <= frames


@pytest.mark.parametrize("budget", [1, 7 * 81, 50 * 81, 399 * 81])
def test_bounded_memory_blocks_give_the_same_path(budget):
    """With back-pointers for only a few frames at a time (81 states here), the path is the same."""
    generator = torch.Generator().manual_seed(1)
    log_probs = torch.randn(400, 12, generator=generator).mul(2).log_softmax(-1)
    targets = torch.randint(1, 12, (40,), generator=generator)
    states, score = viterbi_path(log_probs, targets, blank_id=BLANK)
    blocked, blocked_score = viterbi_path(log_probs, targets, BLANK, max_backpointer_bytes=budget)
    np.testing.assert_array_equal(blocked, states)
    assert blocked_score == score
    spans = forced_align(log_probs, targets, BLANK, max_backpointer_bytes=budget)
    assert spans == forced_align(log_probs, targets, BLANK)


def test_a_single_frame_aligns_a_single_token():
    (span,) = forced_align(peaky([2]), [2], blank_id=BLANK)
    assert (span.token_id, span.start_frame, span.end_frame) == (2, 0, 1)
    with pytest.raises(AlignmentError, match="too long"):
        forced_align(peaky([2]), [2, 3], blank_id=BLANK)
