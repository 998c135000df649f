"""Wav2Vec2FeatureExtractor: parity with the reference (transformers), settings files, errors."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mmspeech.errors import AudioError, CheckpointNotFoundError, ConfigError
from mmspeech.processing.batch import BatchFeature
from mmspeech.processing.feature_extraction import Wav2Vec2FeatureExtractor

pytestmark = pytest.mark.oracle
transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-6


@pytest.fixture
def waveforms() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    # Different lengths, offsets and scales so that per-utterance statistics matter.
    return [
        (rng.standard_normal(1600) * 0.3 + 0.1).astype(np.float32),
        (rng.standard_normal(1111) * 0.05 - 0.02).astype(np.float32),
        (rng.standard_normal(2345) * 0.8).astype(np.float32),
    ]


def assert_same(reference: Mapping[str, Any], ours: Mapping[str, Any]) -> None:
    assert set(ours) == set(reference)
    for key in reference:
        expected, actual = reference[key], ours[key]
        assert type(actual) is type(expected), key
        expected, actual = np.asarray(expected), np.asarray(actual)
        assert actual.shape == expected.shape, key
        assert actual.dtype == expected.dtype, key
        np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE, err_msg=key)


def both(settings: dict[str, Any]) -> tuple[Any, Wav2Vec2FeatureExtractor]:
    return transformers.Wav2Vec2FeatureExtractor(**settings), Wav2Vec2FeatureExtractor(**settings)


# -- parity -------------------------------------------------------------------------------------

CASES: dict[str, dict[str, Any]] = {
    "longest": dict(padding=True),
    "longest+mask": dict(padding="longest", return_attention_mask=True),
    "max_length+mask": dict(padding="max_length", max_length=3000, return_attention_mask=True),
    "max_length": dict(padding="max_length", max_length=3000),
    "multiple+mask": dict(padding=True, pad_to_multiple_of=320, return_attention_mask=True),
    "truncate+mask": dict(
        padding="max_length", max_length=1500, truncation=True, return_attention_mask=True
    ),
    "truncate+multiple": dict(padding=True, max_length=1500, truncation=True, pad_to_multiple_of=7),
}


@pytest.mark.parametrize("do_normalize", [True, False])
@pytest.mark.parametrize("return_tensors", ["pt", "np"])
@pytest.mark.parametrize("case", CASES)
def test_batch_parity(
    waveforms: list[np.ndarray], case: str, return_tensors: str, do_normalize: bool
) -> None:
    reference, ours = both({"do_normalize": do_normalize})
    kwargs: dict[str, Any] = dict(CASES[case], sampling_rate=16000, return_tensors=return_tensors)
    assert_same(reference(waveforms, **kwargs), ours(waveforms, **kwargs))


@pytest.mark.parametrize("default_mask", [True, False])
@pytest.mark.parametrize("return_tensors", ["pt", "np"])
def test_single_waveform_parity(
    waveforms: list[np.ndarray], return_tensors: str, default_mask: bool
) -> None:
    reference, ours = both({"return_attention_mask": default_mask})
    for raw in (waveforms[0], waveforms[0].tolist(), torch.from_numpy(waveforms[0])):
        kwargs: dict[str, Any] = dict(sampling_rate=16000, return_tensors=return_tensors)
        assert_same(reference(raw, **kwargs), ours(raw, **kwargs))


def test_other_batch_forms_parity(waveforms: list[np.ndarray]) -> None:
    reference, ours = both({"return_attention_mask": True})
    kwargs: dict[str, Any] = dict(sampling_rate=16000, padding=True, return_tensors="pt")
    stacked = np.stack([w[:1000] for w in waveforms]).astype(np.float64)  # (batch, samples)
    assert_same(reference(stacked, **kwargs), ours(stacked, **kwargs))
    as_lists = [w.tolist() for w in waveforms]
    assert_same(reference(as_lists, **kwargs), ours(as_lists, **kwargs))
    as_tuple = tuple(waveforms)
    assert_same(reference(as_tuple, **kwargs), ours(as_tuple, **kwargs))


@pytest.mark.parametrize("mask", [True, False])
def test_unpadded_batch_without_tensors_parity(waveforms: list[np.ndarray], mask: bool) -> None:
    reference, ours = both({})
    kwargs: dict[str, Any] = dict(
        sampling_rate=16000, return_attention_mask=mask, max_length=2000, truncation=True
    )
    expected, actual = reference(waveforms, **kwargs), ours(waveforms, **kwargs)
    assert set(actual) == set(expected)
    for key in expected:
        assert isinstance(actual[key], list) and len(actual[key]) == len(waveforms)
        for row_expected, row_actual in zip(expected[key], actual[key], strict=True):
            assert row_actual.dtype == row_expected.dtype
            np.testing.assert_allclose(row_actual, row_expected, rtol=0, atol=TOLERANCE)


def test_float64_and_constant_inputs_parity() -> None:
    reference, ours = both({"return_attention_mask": True})
    batch = [np.linspace(-1, 1, 500), np.full(300, 0.25)]  # float64; a constant (zero-variance) row
    kwargs: dict[str, Any] = dict(sampling_rate=16000, padding=True, return_tensors="np")
    assert_same(reference(batch, **kwargs), ours(batch, **kwargs))


# -- normalisation, by hand ---------------------------------------------------------------------


def test_normalisation_uses_valid_samples_only_with_a_mask() -> None:
    extractor = Wav2Vec2FeatureExtractor(return_attention_mask=True, padding_value=-5.0)
    short = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    out = extractor([short, np.zeros(5, np.float32)], sampling_rate=16000, padding=True)
    expected = (short - 2.0) / np.sqrt(2 / 3 + 1e-7)
    np.testing.assert_allclose(out.input_values[0][:3], expected, rtol=1e-6)
    np.testing.assert_array_equal(out.input_values[0][3:], [-5.0, -5.0])
    np.testing.assert_array_equal(out.attention_mask[0], [1, 1, 1, 0, 0])


def test_without_a_mask_the_padding_is_normalised_with_the_row() -> None:
    # The reference's behaviour: statistics over the whole padded row, padding included.
    extractor = Wav2Vec2FeatureExtractor(return_attention_mask=False)
    short = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    out = extractor([short, np.zeros(5, np.float32)], sampling_rate=16000, padding=True)
    row = np.array([1.0, 2.0, 3.0, 0.0, 0.0])
    expected = (row - row.mean()) / np.sqrt(row.var() + 1e-7)
    np.testing.assert_allclose(out.input_values[0], expected, rtol=1e-6)
    assert "attention_mask" not in out


def test_left_padding_normalises_the_valid_samples() -> None:
    # Not a parity test: the reference takes the first `length` samples even when padding left.
    extractor = Wav2Vec2FeatureExtractor(return_attention_mask=True, padding_side="left")
    short = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    out = extractor([short, np.ones(5, np.float32)], sampling_rate=16000, padding=True)
    np.testing.assert_array_equal(out.attention_mask[0], [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(out.input_values[0][:2], [0.0, 0.0])
    np.testing.assert_allclose(out.input_values[0][2:], (short - 2.0) / np.sqrt(2 / 3 + 1e-7))


def test_input_is_not_aliased() -> None:
    waveform = np.arange(4, dtype=np.float32)
    out = Wav2Vec2FeatureExtractor(do_normalize=False)(waveform, sampling_rate=16000)
    out.input_values[0][0] = 99.0
    assert waveform[0] == 0.0


# -- BatchFeature -------------------------------------------------------------------------------


def test_batch_feature_is_a_mapping_with_attributes_and_to(waveforms: list[np.ndarray]) -> None:
    extractor = Wav2Vec2FeatureExtractor(return_attention_mask=True)
    inputs = extractor(waveforms, sampling_rate=16000, padding=True, return_tensors="pt")
    assert isinstance(inputs, Mapping) and isinstance(inputs, BatchFeature)
    assert inputs.input_values is inputs["input_values"]
    assert inputs.attention_mask.dtype == torch.int32
    with pytest.raises(AttributeError):
        _ = inputs.labels

    def model(input_values: torch.Tensor, attention_mask: torch.Tensor) -> tuple[int, ...]:
        return tuple(input_values.shape)

    assert model(**inputs) == (3, 2345)
    assert inputs.to("cpu", torch.float64) is inputs
    assert inputs.input_values.dtype == torch.float64
    assert inputs.attention_mask.dtype == torch.int32  # integer tensors are only moved
    inputs.to(torch.float16)
    assert inputs.input_values.dtype == torch.float16


# -- errors -------------------------------------------------------------------------------------


def test_wrong_sampling_rate_is_refused(waveforms: list[np.ndarray]) -> None:
    with pytest.raises(ValueError):  # the reference refuses it too
        transformers.Wav2Vec2FeatureExtractor()(waveforms[0], sampling_rate=8000)
    with pytest.raises(AudioError, match=r"expects audio at 16000 Hz, got 8000 Hz.*resample"):
        Wav2Vec2FeatureExtractor()(waveforms[0], sampling_rate=8000)


def test_missing_sampling_rate_warns(
    waveforms: list[np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mmspeech.processing.feature_extraction"):
        Wav2Vec2FeatureExtractor()(waveforms[0])
    assert "Pass sampling_rate" in caplog.text


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(padding="max_length"), "padding='max_length' needs max_length"),
        (dict(truncation=True), "truncation=True needs max_length"),
        (dict(padding="everything"), "padding must be True, False or one of"),
        (dict(return_tensors="tf"), "return_tensors must be 'pt', 'np' or None"),
    ],
)
def test_bad_options(waveforms: list[np.ndarray], kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Wav2Vec2FeatureExtractor()(waveforms, sampling_rate=16000, **kwargs)


def test_ragged_batch_cannot_become_a_tensor(waveforms: list[np.ndarray]) -> None:
    with pytest.raises(ConfigError, match=r"different lengths.*padding=True"):
        Wav2Vec2FeatureExtractor()(waveforms, sampling_rate=16000, return_tensors="pt")


@pytest.mark.parametrize(
    "raw, message",
    [
        ([], "empty batch"),
        (np.zeros((1, 2, 100), np.float32), "Expected mono audio"),
        ([np.zeros((2, 100), np.float32)], "must be 1-D mono"),
        ([np.zeros(10, np.float32), np.zeros(0, np.float32)], "Waveform 1 is empty"),
        ("speech.wav", "Expected a waveform"),
    ],
)
def test_bad_inputs(raw: Any, message: str) -> None:
    with pytest.raises(AudioError, match=message):
        Wav2Vec2FeatureExtractor()(raw, sampling_rate=16000)


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="feature_size 1"):
        Wav2Vec2FeatureExtractor(feature_size=80)
    with pytest.raises(ConfigError, match="padding_side"):
        Wav2Vec2FeatureExtractor(padding_side="middle")
    with pytest.raises(ConfigError, match=r"Unknown feature-extractor setting.*'sample_rate'"):
        Wav2Vec2FeatureExtractor.from_dict({}, sample_rate=8000)


# -- settings files -----------------------------------------------------------------------------


def test_save_matches_the_reference_file(tmp_path: Path) -> None:
    settings = dict(return_attention_mask=True, do_normalize=False, padding_value=0.5)
    reference, ours = both(settings)
    reference.save_pretrained(tmp_path / "reference")
    path = ours.save_pretrained(tmp_path / "ours")
    assert path == tmp_path / "ours" / "preprocessor_config.json"
    expected = (tmp_path / "reference" / "preprocessor_config.json").read_text()
    assert path.read_text() == expected
    assert json.loads(expected)["feature_extractor_type"] == "Wav2Vec2FeatureExtractor"


def test_round_trips_through_both_libraries(tmp_path: Path) -> None:
    ours = Wav2Vec2FeatureExtractor(return_attention_mask=True, do_normalize=False)
    ours.save_pretrained(tmp_path)
    assert Wav2Vec2FeatureExtractor.from_pretrained(tmp_path) == ours
    loaded_by_reference = transformers.Wav2Vec2FeatureExtractor.from_pretrained(tmp_path)
    assert loaded_by_reference.to_dict() == ours.to_dict()


def test_reads_the_nested_processor_config_written_by_the_reference(tmp_path: Path) -> None:
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps({"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "a": 5}))
    processor = transformers.Wav2Vec2Processor(
        feature_extractor=transformers.Wav2Vec2FeatureExtractor(
            return_attention_mask=True, padding_value=0.25
        ),
        tokenizer=transformers.Wav2Vec2CTCTokenizer(str(vocab)),
    )
    saved = tmp_path / "processor"
    processor.save_pretrained(saved)
    assert not (saved / "preprocessor_config.json").exists()
    assert "feature_extractor" in json.loads((saved / "processor_config.json").read_text())

    loaded = Wav2Vec2FeatureExtractor.from_pretrained(saved)

    assert loaded == Wav2Vec2FeatureExtractor(return_attention_mask=True, padding_value=0.25)


def test_nested_settings_win_over_preprocessor_config_like_the_reference(tmp_path: Path) -> None:
    nested = {"feature_extractor": {"sampling_rate": 16000, "return_attention_mask": True}}
    (tmp_path / "processor_config.json").write_text(json.dumps(nested))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"return_attention_mask": False}))
    reference = transformers.Wav2Vec2FeatureExtractor.from_pretrained(tmp_path)
    ours = Wav2Vec2FeatureExtractor.from_pretrained(tmp_path)
    assert reference.return_attention_mask is True
    assert ours.return_attention_mask is True


def test_flat_processor_config_falls_back_to_preprocessor_config(tmp_path: Path) -> None:
    (tmp_path / "processor_config.json").write_text(json.dumps({"processor_class": "X"}))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"do_normalize": False}))
    assert Wav2Vec2FeatureExtractor.from_pretrained(tmp_path).do_normalize is False


def test_hub_style_file_with_unknown_keys_and_overrides(tmp_path: Path) -> None:
    settings = {
        "do_normalize": True,
        "feature_extractor_type": "Wav2Vec2FeatureExtractor",
        "feature_size": 1,
        "padding_side": "right",
        "padding_value": 0,
        "processor_class": "Wav2Vec2Processor",
        "return_attention_mask": True,
        "sampling_rate": 16000,
        "some_future_setting": [1, 2],
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(settings))

    loaded = Wav2Vec2FeatureExtractor.from_pretrained(tmp_path, return_attention_mask=False)

    assert loaded.return_attention_mask is False
    assert loaded.extra == {"some_future_setting": [1, 2]}
    saved = json.loads(loaded.save_pretrained(tmp_path / "out").read_text())
    assert saved["some_future_setting"] == [1, 2]
    assert "processor_class" not in saved


def test_missing_settings_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match=r"preprocessor_config\.json.*processor_conf"):
        Wav2Vec2FeatureExtractor.from_pretrained(tmp_path)
