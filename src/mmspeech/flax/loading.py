"""Reading the PyTorch checkpoints into Flax variables, and writing them back.

The key tables are the PyTorch loader's (:data:`FAMILY_KEYS`, :data:`DECODER_LAYOUTS`), applied
to numpy arrays: the same files and layouts load on both sides.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np

from mmspeech.checkpoints.encoder_decoder import DECODER_LAYOUTS, map_decoder_keys
from mmspeech.checkpoints.loading import FAMILY_KEYS, read_config
from mmspeech.checkpoints.options import HUB_FIELDS as HUB_KWARGS
from mmspeech.checkpoints.resolve import ModelFiles, resolve
from mmspeech.errors import CheckpointError, ConfigError
from mmspeech.flax.weights import (
    State,
    flatten,
    fold_weight_norms,
    from_state,
    read_state,
    to_state,
    unfold_weight_norm,
    write_safetensors,
)
from mmspeech.models.speech_encoder_decoder.config import (
    DECODER_CONFIGS,
    SpeechEncoderDecoderConfig,
)
from mmspeech.models.wav2vec2.config import CONFIG_CLASSES, Wav2Vec2Config

logger = logging.getLogger(__name__)

COMBINED = FAMILY_KEYS["speech-encoder-decoder"]


def _split_hub(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    hub = {k: kwargs.pop(k) for k in HUB_KWARGS if k in kwargs}
    return hub, kwargs


def _drop(state: State, expected: set[str], prefixes: tuple[str, ...]) -> list[str]:
    """Remove the checkpoint tensors the model has no place for and that ``prefixes`` allow
    dropping (pretraining heads, tied copies, BatchNorm counters)."""
    dropped = []
    for key in list(state):
        if key not in expected and (
            key.startswith(prefixes) or key.endswith("num_batches_tracked")
        ):
            del state[key]
            dropped.append(key)
    return dropped


def read_combined(
    ref: str | os.PathLike[str], hub: dict[str, Any]
) -> tuple[SpeechEncoderDecoderConfig, State, ModelFiles]:
    """The config and the weight-norm-folded tensors of a combined checkpoint."""
    files = resolve(ref, **hub)
    data = files.read_json("config.json")
    if data is None:
        files.require("config.json", "the model configuration")
        raise AssertionError("unreachable")
    found = data.get("model_type")
    if found != SpeechEncoderDecoderConfig.model_type:
        raise CheckpointError(
            f"{files.ref} is a {found!r} checkpoint; FlaxSpeechEncoderDecoderModel loads "
            "'speech-encoder-decoder' checkpoints (use from_encoder_decoder_pretrained to join "
            "a speech encoder and a text decoder)."
        )
    config = SpeechEncoderDecoderConfig.from_dict(data)
    config.extra["_name_or_path"] = files.ref
    state = read_state(files.weight_files())
    fold_weight_norms(state)
    return config, state, files


def load_combined_state(state: State, template: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Variables for a combined checkpoint's ``state`` (strict, as the PyTorch loader)."""
    expected = set(flatten(template))
    dropped = _drop(state, expected, COMBINED.droppable)
    if dropped:
        logger.info("Ignored %d checkpoint tensors: %s", len(dropped), ", ".join(dropped[:10]))
    return from_state(state, template, source)


def _encoder_part(
    ref: str | os.PathLike[str], kwargs: dict[str, Any]
) -> tuple[Wav2Vec2Config, State]:
    """A speech encoder's config and tensors, under the bare encoder's names."""
    hub, overrides = _split_hub(kwargs)
    files = resolve(ref, **hub)
    data = files.read_json("config.json") or {}
    model_type = data.get("model_type")
    config_class = CONFIG_CLASSES.get(str(model_type))
    if config_class is None:
        raise ConfigError(
            f"{ref} has model_type {model_type!r}; a speech encoder must be one of "
            f"{', '.join(CONFIG_CLASSES)}."
        )
    config = read_config(files, config_class, overrides)
    state = read_state(files.weight_files())
    fold_weight_norms(state)
    prefix = f"{model_type}."
    if any(key.startswith(prefix) for key in state):  # a task checkpoint: keep the encoder
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return config, state


def _decoder_part(ref: str | os.PathLike[str], kwargs: dict[str, Any]) -> tuple[Any, State, str]:
    """A text decoder's config (made a causal LM with cross-attention), tensors, family."""
    hub, overrides = _split_hub(kwargs)
    files = resolve(ref, **hub)
    data = files.read_json("config.json") or {}
    model_type = str(data.get("model_type"))
    config_class = DECODER_CONFIGS.get(model_type)
    if config_class is None:
        raise ConfigError(
            f"{ref} has model_type {model_type!r}; a text decoder must be one of "
            f"{', '.join(DECODER_CONFIGS)}."
        )
    config = read_config(files, config_class, overrides)
    changes: dict[str, Any] = {"is_decoder": True, "add_cross_attention": True}
    if model_type in ("bart", "mbart"):
        changes["is_encoder_decoder"] = False
    return config.replace(**changes), read_state(files.weight_files()), model_type


def split_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``encoder_*`` and ``decoder_*`` arguments apart from the combined config's
    (``decoder_start_token_id`` is a combined-config field)."""
    encoder: dict[str, Any] = {}
    decoder: dict[str, Any] = {}
    combined: dict[str, Any] = {}
    for name, value in kwargs.items():
        if name == "decoder_start_token_id":
            combined[name] = value
        elif name.startswith("encoder_"):
            encoder[name[len("encoder_") :]] = value
        elif name.startswith("decoder_"):
            decoder[name[len("decoder_") :]] = value
        else:
            combined[name] = value
    return encoder, decoder, combined


def join_pretrained(
    encoder_ref: str | os.PathLike[str],
    decoder_ref: str | os.PathLike[str],
    kwargs: dict[str, Any],
) -> tuple[SpeechEncoderDecoderConfig, State, str]:
    """The combined config, the tensors of both checkpoints under combined names, and the
    decoder's family (which says how its keys map, :data:`DECODER_LAYOUTS`)."""
    encoder_kwargs, decoder_kwargs, combined = split_kwargs(kwargs)
    encoder_config, encoder_state = _encoder_part(encoder_ref, encoder_kwargs)
    decoder_config, decoder_state, family = _decoder_part(decoder_ref, decoder_kwargs)
    config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
        encoder_config, decoder_config, **combined
    )
    return (
        config,
        {
            **{f"encoder.{k}": v for k, v in encoder_state.items()},
            **{f"decoder.{k}": v for k, v in decoder_state.items()},
        },
        family,
    )


def fill_joined(
    state: State, family: str, fresh: Mapping[str, Any], source: str
) -> tuple[dict[str, Any], list[str]]:
    """Variables from the joined ``state``, fresh where the checkpoints lack weights.

    Returns the variables and the checkpoint names of the weights created fresh.
    """
    expected = set(flatten(fresh))
    layout = DECODER_LAYOUTS[family]
    decoder_state = {k[len("decoder.") :]: v for k, v in state.items() if k.startswith("decoder.")}
    decoder_expected = {k[len("decoder.") :] for k in expected if k.startswith("decoder.")}
    dropped = map_decoder_keys(cast(Any, decoder_state), layout, decoder_expected)
    if dropped:
        logger.info("Ignored %d tensors a causal LM does not use: %s", len(dropped), dropped[:10])
    encoder_state = {k: v for k, v in state.items() if k.startswith("encoder.")}
    _drop(encoder_state, expected, tuple(f"encoder.{p}" for p in FAMILY_KEYS["wav2vec2"].droppable))
    merged = {**encoder_state, **{f"decoder.{k}": v for k, v in decoder_state.items()}}
    creatable = [
        key for key in expected - set(merged)
        if key.startswith(("enc_to_dec_proj.", "encoder.adapter."))
        or (key.startswith("decoder.")
            and any(re.fullmatch(p, key[len("decoder.") :]) for p in layout.created))
    ]  # fmt: skip
    variables = from_state(merged, fresh, source, fresh=fresh, allow_missing=creatable)
    return variables, sorted(creatable)


def save_checkpoint(
    config: SpeechEncoderDecoderConfig,
    variables: Mapping[str, Any],
    directory: str | os.PathLike[str],
    generation_config: dict[str, Any] | None = None,
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (+ ``generation_config.json``) that our
    PyTorch class and the reference load: weight norm unfolded as the reference stores it."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    data = config.to_dict()
    data.pop("_name_or_path", None)
    data["architectures"] = ["SpeechEncoderDecoderModel"]
    data["dtype"] = "float32"
    with open(out / "config.json", "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    state = to_state(variables)
    if COMBINED.saves_weight_norm(config):
        for module, dim in COMBINED.weight_norm:
            unfold_weight_norm(state, module, dim)
    write_safetensors({k: v.astype(np.float32) for k, v in state.items()},
                      out / "model.safetensors")  # fmt: skip
    if generation_config is not None:
        with open(out / "generation_config.json", "w", encoding="utf-8") as handle:
            json.dump(generation_config, handle, indent=2, sort_keys=True)
            handle.write("\n")
    return out
