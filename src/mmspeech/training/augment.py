"""Waveform augmentation for training: speed perturbation, gain and additive noise.

Each training waveform is changed a little, differently every time it is drawn, so a model
hears more speakers/rates/recording levels than the data holds. Speed perturbation resamples
(tempo and pitch change together, as in Kaldi's 3-way speed perturbation); noise is white
Gaussian at a signal-to-noise ratio drawn per utterance. Draws come from a generator seeded by
the trainer's seed and position, so a resumed run augments exactly like an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmspeech.api.options import SAMPLE_RATE
from mmspeech.errors import ConfigError


@dataclass(frozen=True)
class Augmentation:
    """What to vary; the defaults are a mild recipe that suits read speech.

    speeds: speed factors drawn uniformly per utterance (1.1 = 10 % faster and shorter).
    gain_db: a gain drawn uniformly from this (low, high) range, in decibels.
    noise_snr_db: white noise at an SNR drawn uniformly from (low, high) dB; None: no noise.
    noise_probability: the share of utterances that get noise.
    """

    speeds: tuple[float, ...] = (0.9, 1.0, 1.1)
    gain_db: tuple[float, float] = (-6.0, 6.0)
    noise_snr_db: tuple[float, float] | None = (10.0, 40.0)
    noise_probability: float = 0.5

    def __post_init__(self) -> None:
        if not self.speeds or any(not 0.5 <= s <= 2.0 for s in self.speeds):
            raise ConfigError(f"Augmentation speeds must be in [0.5, 2.0], got {self.speeds}.")
        for name in ("gain_db", "noise_snr_db"):
            bounds = getattr(self, name)
            if bounds is not None and (len(bounds) != 2 or bounds[0] > bounds[1]):
                raise ConfigError(f"Augmentation.{name} must be (low, high), got {bounds}.")
        if not 0.0 <= self.noise_probability <= 1.0:
            raise ConfigError("Augmentation.noise_probability must be in [0, 1].")

    def __call__(self, waveform: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """An augmented copy of a (samples,) float32 16 kHz waveform."""
        out = np.asarray(waveform, dtype=np.float32)
        speed = float(self.speeds[rng.integers(len(self.speeds))])
        if speed != 1.0 and len(out) > 1:
            import soxr

            # played ``speed`` times faster: read as if recorded at SAMPLE_RATE * speed
            out = soxr.resample(out, SAMPLE_RATE * speed, SAMPLE_RATE)
            out = out.astype(np.float32, copy=False)
        out = out * np.float32(10.0 ** (rng.uniform(*self.gain_db) / 20.0))
        if self.noise_snr_db is not None and rng.random() < self.noise_probability:
            power = float(np.mean(out.astype(np.float64) ** 2))
            if power > 0.0:
                snr = rng.uniform(*self.noise_snr_db)
                scale = np.sqrt(power / 10.0 ** (snr / 10.0))
                out = out + (scale * rng.standard_normal(len(out))).astype(np.float32)
        return np.clip(out, -1.0, 1.0).astype(np.float32, copy=False)
