"""The wav2vec2 / HuBERT feature extractor: waveforms in, padded normalised ``input_values`` out.

Output matches the reference ``Wav2Vec2FeatureExtractor`` of transformers, including one quirk:
with ``return_attention_mask=False`` a padded row is normalised over its *whole* length, padding
included (the padding becomes ``-mean / std``, not ``padding_value``). With an attention mask the
statistics cover the valid samples only and the padding is set to ``padding_value``.
(With ``padding_side="left"`` we use the valid samples; the reference takes the first ones.)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmspeech.checkpoints import resolve
from mmspeech.checkpoints.options import split_hub
from mmspeech.errors import AudioError, CheckpointError, ConfigError
from mmspeech.processing.batch import BatchFeature

logger = logging.getLogger(__name__)

PREPROCESSOR_CONFIG = "preprocessor_config.json"  # older layout: the settings at the top level
PROCESSOR_CONFIG = "processor_config.json"  # newer layout: settings under "feature_extractor"
_NESTED_KEYS = ("feature_extractor", "audio_processor")
_PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
_EPSILON = 1e-7  # added to the variance before the square root, as in the reference


@dataclass
class Wav2Vec2FeatureExtractor:
    """Pads a batch of 16 kHz mono waveforms and normalises each to zero mean and unit variance.

    Field names are the keys of ``preprocessor_config.json``.
    """

    feature_size: int = 1  # values per time step: 1 for raw waveforms (the only value supported)
    sampling_rate: int = 16000  # the rate, in Hz, the model was trained on; other rates are refused
    padding_value: float = 0.0  # written into padded positions
    do_normalize: bool = True  # zero-mean, unit-variance normalisation of each waveform
    return_attention_mask: bool = False  # default of __call__; true for layer-norm (large) models
    padding_side: str = "right"  # "right" or "left"
    # Keys of the settings file that are none of the above, kept to be saved back unchanged.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.feature_size != 1:
            raise ConfigError(
                f"Wav2Vec2FeatureExtractor takes raw waveforms (feature_size 1), got feature_size "
                f"{self.feature_size}."
            )
        if self.padding_side not in ("right", "left"):
            raise ConfigError(f"padding_side must be 'right' or 'left', got {self.padding_side!r}.")

    # -- extraction -----------------------------------------------------------------------------

    def __call__(
        self,
        raw_speech: np.ndarray | torch.Tensor | Sequence[float] | Sequence[np.ndarray],
        sampling_rate: int | None = None,
        padding: bool | str = False,
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        return_tensors: str | None = None,
    ) -> BatchFeature:
        """Turn one waveform or a batch of waveforms into model inputs.

        Args:
            raw_speech: one mono waveform — ``(samples,)`` array/tensor or list of floats — or a
                batch: a list of those, or a ``(batch, samples)`` array.
            sampling_rate: the rate of ``raw_speech``; must equal ``self.sampling_rate``.
            padding: True / "longest" pads to the longest waveform, "max_length" to
                ``max_length``, False / "do_not_pad" leaves lengths as they are.
            max_length: padding length for "max_length", and the truncation length.
            truncation: cut waveforms longer than ``max_length``.
            pad_to_multiple_of: round the padding (and truncation) length up to a multiple of this.
            return_attention_mask: add ``attention_mask``; None uses ``self.return_attention_mask``.
            return_tensors: "pt" for torch tensors, "np" for numpy arrays, both
                ``(batch, samples)``; None for lists of 1-D numpy arrays.

        Raises:
            AudioError: a rate other than ``self.sampling_rate``, or an empty or non-mono waveform.
            ConfigError: inconsistent padding/truncation options, or a ragged batch with tensors.
        """
        if sampling_rate is None:
            logger.warning(
                "Pass sampling_rate to Wav2Vec2FeatureExtractor(); without it a waveform at the "
                "wrong rate goes unnoticed."
            )
        elif sampling_rate != self.sampling_rate:
            raise AudioError(
                f"This feature extractor expects audio at {self.sampling_rate} Hz, got "
                f"{sampling_rate} Hz. Resample first, e.g. with "
                f"mmspeech.audio.load_audio(path, {self.sampling_rate}) or "
                f"mmspeech.audio.resample(waveform, {sampling_rate}, {self.sampling_rate})."
            )
        strategy = _padding_strategy(padding, max_length)
        if truncation and max_length is None:
            raise ConfigError("truncation=True needs max_length.")
        with_mask = (
            self.return_attention_mask if return_attention_mask is None else return_attention_mask
        )

        waveforms = _as_batch(raw_speech)
        if truncation:
            assert max_length is not None
            limit = _round_up(max_length, pad_to_multiple_of)
            waveforms = [waveform[:limit] for waveform in waveforms]
        target = None
        if strategy == "longest":
            target = _round_up(max(len(waveform) for waveform in waveforms), pad_to_multiple_of)
        elif strategy == "max_length":
            assert max_length is not None
            target = _round_up(max_length, pad_to_multiple_of)

        rows, masks = [], []
        for waveform in waveforms:
            row, valid = self._pad(waveform, target)
            if self.do_normalize:
                # With a mask: statistics of the valid samples. Without: of the whole padded row.
                row = self._normalize(row, valid if with_mask else slice(0, len(row)))
            rows.append(row)
            mask = np.zeros(len(row), dtype=np.int32)
            mask[valid] = 1
            masks.append(mask)
        output = BatchFeature(input_values=rows)
        if with_mask:
            output["attention_mask"] = masks
        return _convert(output, return_tensors)

    def _pad(self, waveform: np.ndarray, target: int | None) -> tuple[np.ndarray, slice]:
        """``waveform`` padded to ``target`` samples, and the slice that holds the waveform."""
        length = len(waveform)
        if target is None or length >= target:
            return waveform, slice(0, length)
        if self.padding_side == "left":
            padded = np.pad(waveform, (target - length, 0), constant_values=self.padding_value)
            return padded, slice(target - length, target)
        padded = np.pad(waveform, (0, target - length), constant_values=self.padding_value)
        return padded, slice(0, length)

    def _normalize(self, row: np.ndarray, valid: slice) -> np.ndarray:
        """Zero mean, unit variance with the statistics of ``row[valid]``; padding_value outside."""
        samples = row[valid]  # float32, so mean and var are float32 as in the reference
        normalized = (row - samples.mean()) / np.sqrt(samples.var() + _EPSILON)
        normalized[: valid.start] = self.padding_value
        normalized[valid.stop :] = self.padding_value
        return normalized

    # -- settings -------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, settings: dict[str, Any], **overrides: Any) -> Wav2Vec2FeatureExtractor:
        """Build from the settings of ``preprocessor_config.json``; ``overrides`` win over them.

        Unknown keys are kept in ``extra`` (and written back by :meth:`save_pretrained`).
        """
        known = {f.name for f in fields(cls)} - {"extra"}
        unknown_overrides = set(overrides) - known
        if unknown_overrides:
            raise ConfigError(
                f"Unknown feature-extractor setting(s) {sorted(unknown_overrides)}; "
                f"expected some of {sorted(known)}."
            )
        settings = {**settings, **overrides}
        kind = settings.pop("feature_extractor_type", None)
        if kind not in (None, cls.__name__):
            logger.warning("Reading %s settings as a %s.", kind, cls.__name__)
        settings.pop("processor_class", None)  # the reference never saves it here either
        values = {key: settings.pop(key) for key in known if key in settings}
        try:
            return cls(**values, extra=settings)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"Invalid feature-extractor settings {values}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """The settings as the reference writes them, plus any unknown keys that were read."""
        settings = dict(self.extra)
        settings.update(
            feature_extractor_type=type(self).__name__,
            feature_size=self.feature_size,
            sampling_rate=self.sampling_rate,
            padding_value=self.padding_value,
            do_normalize=self.do_normalize,
            return_attention_mask=self.return_attention_mask,
            padding_side=self.padding_side,
        )
        return settings

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> Path:
        """Write ``preprocessor_config.json`` into ``save_directory``; returns its path."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / PREPROCESSOR_CONFIG
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        path.write_text(text, encoding="utf-8")
        logger.info("Feature extractor settings saved in %s", path)
        return path

    @classmethod
    def from_pretrained(
        cls,
        ref: str | os.PathLike[str],
        **kwargs: Any,
    ) -> Wav2Vec2FeatureExtractor:
        """Load the settings of a checkpoint directory or hub id.

        ``kwargs``: hub settings (``revision``, ``cache_dir``, ``token``, ``local_files_only``)
        and feature-extractor settings that replace the file's.

        Like the reference, a ``processor_config.json`` holding a ``"feature_extractor"`` section
        wins; otherwise ``preprocessor_config.json`` is read.

        Raises:
            CheckpointNotFoundError: the checkpoint has neither file.
            CheckpointError: the file is not valid JSON or its settings are invalid.
        """
        hub, overrides = split_hub(kwargs)  # hub settings (LoadOptions fields), then settings
        files = resolve(ref, **hub)
        processor = files.read_json(PROCESSOR_CONFIG) or {}
        settings = next((processor[key] for key in _NESTED_KEYS if key in processor), None)
        if settings is None:
            files.require(
                PREPROCESSOR_CONFIG,
                f"feature-extractor settings; a {PROCESSOR_CONFIG} with a 'feature_extractor' "
                "section would also do",
            )
            settings = files.read_json(PREPROCESSOR_CONFIG)
        if not isinstance(settings, dict):
            raise CheckpointError(f"The feature-extractor settings of {ref} are not a JSON object.")
        try:
            return cls.from_dict(settings, **overrides)
        except ConfigError as exc:
            raise CheckpointError(f"{ref}: {exc}") from exc


# -- helpers ------------------------------------------------------------------------------------


def _padding_strategy(padding: bool | str, max_length: int | None) -> str:
    if padding is True:
        strategy = "longest"
    elif padding is False:
        strategy = "do_not_pad"
    elif isinstance(padding, str) and padding in _PADDING_STRATEGIES:
        strategy = padding
    else:
        raise ConfigError(
            f"padding must be True, False or one of {list(_PADDING_STRATEGIES)}, got {padding!r}."
        )
    if strategy == "max_length" and max_length is None:
        raise ConfigError("padding='max_length' needs max_length.")
    return strategy


def _round_up(length: int, multiple: int | None) -> int:
    if multiple is None or length % multiple == 0:
        return length
    return (length // multiple + 1) * multiple


def _as_batch(raw_speech: Any) -> list[np.ndarray]:
    """A list of 1-D float32 waveforms from any of the accepted input forms."""
    if isinstance(raw_speech, torch.Tensor):
        raw_speech = raw_speech.detach().cpu().numpy()
    if isinstance(raw_speech, np.ndarray):
        if raw_speech.ndim > 2:
            raise AudioError(
                f"Expected mono audio: a (samples,) waveform or a (batch, samples) array, got "
                f"shape {raw_speech.shape}. Mix multi-channel audio down first "
                "(mmspeech.audio.to_mono)."
            )
        items: list[Any] = list(raw_speech) if raw_speech.ndim == 2 else [raw_speech]
    elif isinstance(raw_speech, (list, tuple)):
        if len(raw_speech) == 0:
            raise AudioError("Got an empty batch: pass at least one waveform.")
        is_batch = isinstance(raw_speech[0], (np.ndarray, torch.Tensor, list, tuple))
        items = list(raw_speech) if is_batch else [raw_speech]
    else:
        raise AudioError(
            f"Expected a waveform (numpy array, torch tensor or list of floats) or a list of "
            f"them, got {type(raw_speech).__name__}."
        )

    waveforms = []
    for index, item in enumerate(items):
        if isinstance(item, torch.Tensor):
            item = item.detach().cpu().numpy()
        waveform = np.array(item, dtype=np.float32)  # a copy: never alias the input
        if waveform.ndim != 1:
            raise AudioError(
                f"Waveform {index} has shape {waveform.shape}; each waveform must be 1-D mono "
                "(mix multi-channel audio down first with mmspeech.audio.to_mono)."
            )
        if waveform.size == 0:
            raise AudioError(f"Waveform {index} is empty.")
        waveforms.append(waveform)
    return waveforms


def _convert(output: BatchFeature, return_tensors: str | None) -> BatchFeature:
    if return_tensors is None:
        return output
    if return_tensors not in ("pt", "np"):
        raise ConfigError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}.")
    lengths = {len(row) for row in output["input_values"]}
    if len(lengths) > 1:
        raise ConfigError(
            f"Cannot stack waveforms of different lengths {sorted(lengths)} into one tensor: "
            "pass padding=True (and return_attention_mask=True for layer-norm models)."
        )
    for key, rows in output.items():
        stacked = np.stack(rows)
        output[key] = torch.from_numpy(stacked) if return_tensors == "pt" else stacked
    return output
