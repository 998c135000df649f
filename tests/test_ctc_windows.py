"""Fixed windows with context: tiling, frame-exact stitching, a tiny model on windows vs whole."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import MMS, TINY, reference_model, speech

from mmspeech.ctc import Window, greedy_spans, iter_windows, keep_frames, samples_per_frame
from mmspeech.errors import ConfigError
from mmspeech.models.wav2vec2.config import Wav2Vec2Config

RATE = 16_000
FRAME = 320


def conv_frames(num_samples: int, kernels=(10, 3, 3, 3, 3, 2, 2), strides=(5, 2, 2, 2, 2, 2, 2)):
    """Output frames of wav2vec2's feature encoder for an input of num_samples."""
    length = num_samples
    for kernel, stride in zip(kernels, strides, strict=True):
        length = (length - kernel) // stride + 1
    return length


def test_samples_per_frame_from_config_objects_and_dicts():
    assert samples_per_frame(Wav2Vec2Config()) == 320
    assert samples_per_frame({"conv_stride": [5, 2, 2]}) == 20
    conv = {k: TINY[k] for k in ("conv_dim", "conv_stride", "conv_kernel")}
    assert samples_per_frame(Wav2Vec2Config(**conv)) == 20
    with pytest.raises(ConfigError, match="conv_stride"):
        samples_per_frame({"hidden_size": 4})


@pytest.mark.parametrize(
    "num_samples",
    [1, 319, 320, 400, RATE, 30 * RATE, 30 * RATE + 1, 31 * RATE, 50 * RATE + 123, 20 * 60 * RATE],
)
def test_kept_regions_tile_the_audio_on_frame_boundaries(num_samples):
    windows = list(iter_windows(num_samples, RATE, window_s=30.0, context_s=5.0))
    assert windows[0].start == 0 and windows[0].keep_start == 0
    assert windows[-1].end == num_samples and windows[-1].keep_end == num_samples
    assert [w.is_last for w in windows] == [False] * (len(windows) - 1) + [True]
    for before, after in itertools.pairwise(windows):
        assert before.keep_end == after.keep_start  # kept regions touch: no gap, no overlap
        assert after.start > before.start
        assert before.keep_end - before.start >= 5 * RATE  # context on the right of the kept part
        assert before.end - before.keep_end == 5 * RATE
        assert after.keep_start - after.start >= 5 * RATE  # ... and on the left of the next one
    for w in windows:
        assert 0 <= w.start <= w.keep_start < w.keep_end <= w.end <= num_samples
        assert w.end - w.start <= 30 * RATE
        assert w.start % FRAME == 0 and w.keep_start % FRAME == 0
        assert w.keep_end % FRAME == 0 or w.keep_end == num_samples


def test_short_audio_is_one_window_and_exact_boundaries():
    assert list(iter_windows(1000, RATE, window_s=30.0, context_s=5.0)) == [
        Window(0, 1000, 0, 1000)
    ]
    exact = 30 * RATE
    assert list(iter_windows(exact, RATE, window_s=30.0, context_s=5.0)) == [
        Window(0, exact, 0, exact)
    ]
    # One sample past a window: a second, full-length window ending at the audio's end.
    windows = list(iter_windows(exact + 1, RATE, window_s=30.0, context_s=5.0))
    assert windows[0] == Window(0, exact, 0, 25 * RATE)
    assert windows[1].end == exact + 1 and windows[1].keep_start == 25 * RATE
    assert windows[1].start == FRAME  # moved back to a full window, rounded up to a frame
    # Steps of 20 s: 0-30, 20-50, then the last one is a full window ending at 60 s (30-60).
    windows = list(iter_windows(60 * RATE, RATE, window_s=30.0, context_s=5.0))
    assert [(w.start // RATE, w.end // RATE, w.keep_start // RATE, w.keep_end // RATE)
            for w in windows] == [(0, 30, 0, 25), (20, 50, 25, 45), (30, 60, 45, 60)]  # fmt: skip


def test_last_short_scrap_gets_a_full_window():
    num_samples = 45 * RATE + 17  # the plain stride grid would end with a ~5 s window at 40 s
    last = list(iter_windows(num_samples, RATE, window_s=30.0, context_s=5.0))[-1]
    assert last.end - last.start >= 30 * RATE - FRAME
    assert last.keep_start == 25 * RATE


def test_bad_window_settings_are_clear_errors():
    with pytest.raises(ConfigError, match="window_s > 2 \\* context_s"):
        list(iter_windows(RATE * 100, RATE, window_s=10.0, context_s=5.0))
    with pytest.raises(ConfigError, match="num_samples > 0"):
        list(iter_windows(0, RATE))
    with pytest.raises(ConfigError, match="shape \\(frames, vocab\\)"):
        keep_frames(torch.zeros(1, 5, 3), Window(0, 10, 0, 10))


@pytest.mark.parametrize("num_samples", [7 * RATE + 5, 33 * RATE, 61 * RATE + 400, 2 * 60 * RATE])
def test_stitched_frames_equal_the_unchunked_frames(num_samples):
    """Emissions that depend only on the global frame index (a model with perfect context):
    the kept frames of all windows are exactly the unchunked frames, so the decodes agree."""
    total = conv_frames(num_samples)
    rng = np.random.default_rng(num_samples)
    unchunked = rng.standard_normal((total, 6)).astype(np.float32)
    unchunked[rng.random(total) < 0.5, 0] += 4.0  # plenty of blanks, as real CTC output has
    parts = []
    for w in iter_windows(num_samples, RATE, window_s=10.0, context_s=2.0):
        first = w.start // FRAME
        window_logits = unchunked[first : first + conv_frames(w.end - w.start)]
        parts.append(keep_frames(window_logits, w, FRAME))
    stitched = np.concatenate(parts)
    assert stitched.shape == unchunked.shape
    np.testing.assert_array_equal(stitched, unchunked)
    assert greedy_spans(stitched, blank_id=0) == greedy_spans(unchunked, blank_id=0)


@pytest.mark.oracle
def test_tiny_model_on_windows_matches_the_whole_audio():
    """A tiny MMS-style Wav2Vec2ForCTC (20 samples per frame) on 1 s windows with 0.25 s context
    vs the whole 3 s: same frame count, logits within 0.05, greedy ids identical wherever the
    unchunked top-2 margin exceeds that difference (everything else is a near tie)."""
    model = reference_model("wav2vec2", "ctc", seed=0, **MMS)
    frame = samples_per_frame(model.config.to_dict())
    assert frame == 20
    audio = torch.from_numpy(speech(3.0, seed=1))
    windows = list(iter_windows(len(audio), RATE, window_s=1.0, context_s=0.25,
                                samples_per_frame=frame))  # fmt: skip
    assert len(windows) == 5
    with torch.no_grad():
        whole = model(audio[None]).logits[0]  # (T, V)
        parts = [keep_frames(model(audio[None, w.start : w.end]).logits[0], w, frame)
                 for w in windows]  # fmt: skip
    stitched = torch.cat(parts)
    assert stitched.shape == whole.shape
    diff = (stitched - whole).abs().max().item()
    assert diff < 0.05
    top2 = whole.topk(2, dim=-1).values
    clear = (top2[:, 0] - top2[:, 1]) > 2 * diff
    assert clear.float().mean() > 0.75
    assert torch.equal(stitched.argmax(-1)[clear], whole.argmax(-1)[clear])
    assert (stitched.argmax(-1) == whole.argmax(-1)).float().mean() > 0.95
