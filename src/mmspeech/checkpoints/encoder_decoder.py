"""Join a pretrained speech encoder and a pretrained text decoder into a speech encoder-decoder.

The encoder loads as a bare wav2vec 2.0 / HuBERT model (a CTC or pretraining checkpoint is
stripped to its encoder). The decoder checkpoint may be saved in any of its family's layouts
(``BertModel``, ``BertLMHeadModel``, ``BertForPreTraining``, ``GPT2Model``, ``GPT2LMHeadModel``,
``BartModel``, ``BartForConditionalGeneration``, the mBART ones …); :data:`DECODER_LAYOUTS`
declares how each family's keys map onto the causal LM with cross-attention, which checkpoint
tensors a causal LM does not use, and which weights may be absent and are then created.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from mmspeech.checkpoints.compute import resolve_compute_type
from mmspeech.checkpoints.loading import _init_fresh, finish_load, read_config
from mmspeech.checkpoints.options import HUB_FIELDS, load_options
from mmspeech.checkpoints.resolve import resolve
from mmspeech.checkpoints.weights import read_state_dict
from mmspeech.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from mmspeech.models.speech_encoder_decoder.model import (
        SpeechEncoderDecoderModel,
        TextDecoder,
    )
    from mmspeech.models.wav2vec2.model import HubertModel, Wav2Vec2Model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecoderLayout:
    """How one decoder family's checkpoints map onto our causal LM (keys as the reference's)."""

    body: str  # prefix of the decoder body in the causal LM; bare-model checkpoints lack it
    renames: tuple[tuple[str, str], ...]  # legacy key fragments -> ours (old BERT gamma/beta)
    aliases: tuple[tuple[str, str], ...]  # (our key, checkpoint key it is read from if absent)
    unused: tuple[str, ...]  # regexes: checkpoint tensors a causal LM has no place for
    tied_copies: tuple[str, ...]  # regexes: stored copies of a tied LM head (dropped if tied)
    created: tuple[str, ...]  # regexes: our keys a plain checkpoint lacks, created fresh


DECODER_LAYOUTS: dict[str, DecoderLayout] = {
    "bert": DecoderLayout(
        body="bert.",
        renames=(("LayerNorm.gamma", "LayerNorm.weight"), ("LayerNorm.beta", "LayerNorm.bias")),
        aliases=(),
        # the pooler and the next-sentence head; the MLM output bias is cls.predictions.bias
        unused=(
            r"bert\.pooler\..*",
            r"cls\.seq_relationship\..*",
            r"cls\.predictions\.decoder\.bias",
        ),
        tied_copies=(r"cls\.predictions\.decoder\.weight",),
        created=(r"bert\.encoder\.layer\.\d+\.crossattention\..*", r"cls\.predictions\..*"),
    ),
    "gpt2": DecoderLayout(
        body="transformer.",
        renames=(),
        aliases=(),
        # causal-mask buffers stored by old GPT-2 checkpoints
        unused=(r"transformer\.h\.\d+\.(attn|crossattention)\.(bias|masked_bias)",),
        tied_copies=(r"lm_head\.weight",),
        created=(r"transformer\.h\.\d+\.(crossattention|ln_cross_attn)\..*", r"lm_head\.weight"),
    ),
    "bart": DecoderLayout(
        body="model.",
        renames=(),
        # BartModel saves the token embedding once, as the shared one
        aliases=(("model.decoder.embed_tokens.weight", "model.shared.weight"),),
        unused=(r"model\.encoder\..*", r"model\.shared\.weight", r"final_logits_bias"),
        tied_copies=(r"lm_head\.weight",),
        created=(r"lm_head\.weight",),
    ),
}
DECODER_LAYOUTS["mbart"] = DECODER_LAYOUTS["bart"]


def _matches(patterns: tuple[str, ...], key: str) -> bool:
    return any(re.fullmatch(pattern, key) for pattern in patterns)


def map_decoder_keys(
    state: dict[str, torch.Tensor], layout: DecoderLayout, expected: set[str]
) -> list[str]:
    """Rename ``state`` (a decoder checkpoint) to the causal LM's keys, in place.

    Returns the checkpoint keys dropped as unused by a causal LM.
    """
    for old, new in layout.renames:
        for key in [k for k in state if old in k]:
            state[key.replace(old, new)] = state.pop(key)
    if not any(key.startswith(layout.body) for key in state):
        # a bare model (BertModel, GPT2Model, BartModel): every key is under the body
        for key in list(state):
            state[layout.body + key] = state.pop(key)
    for ours, theirs in layout.aliases:
        if ours not in state and theirs in state:
            state[ours] = state[theirs]
    dropped = []
    for key in list(state):
        if key in expected:
            continue
        if _matches(layout.unused, key) or _matches(layout.tied_copies, key):
            del state[key]
            dropped.append(key)
    return dropped


def load_decoder(
    decoder: TextDecoder, state: dict[str, torch.Tensor], model_type: str, source: str
) -> list[str]:
    """Load ``state`` into ``decoder`` (built on the meta device) and create what it lacks.

    Returns the decoder keys initialised fresh. Fails listing unexpected, missing (other than
    the creatable ones) and mis-shaped tensors.
    """
    layout = DECODER_LAYOUTS[model_type]
    expected = decoder.state_dict()
    dropped = map_decoder_keys(state, layout, set(expected))
    if dropped:
        logger.info("Ignored %d tensors a causal LM does not use: %s", len(dropped), dropped[:10])
    missing = sorted(set(expected) - set(state))
    created = [key for key in missing if _matches(layout.created, key)]
    hard_missing = [key for key in missing if key not in created]
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{key}: checkpoint {tuple(state[key].shape)}, model {tuple(expected[key].shape)}"
        for key in set(state) & set(expected)
        if state[key].shape != expected[key].shape
    )
    if hard_missing or unexpected or mismatched:
        parts = []
        if hard_missing:
            parts.append(f"missing ({len(hard_missing)}): " + ", ".join(hard_missing[:20]))
        if unexpected:
            parts.append(f"unexpected ({len(unexpected)}): " + ", ".join(unexpected[:20]))
        if mismatched:
            parts.append("wrong shape: " + ", ".join(mismatched[:20]))
        raise CheckpointError(
            f"{source} is not a {model_type} decoder checkpoint that matches its config.json: "
            + "; ".join(parts)
            + ". Check that the weights and config.json belong together."
        )
    decoder.load_state_dict(state, strict=False, assign=True)
    _init_fresh(decoder, created, decoder.config.initializer_range)
    return created


def _split_kwargs(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``encoder_*`` and ``decoder_*`` arguments apart from the combined config's.

    ``decoder_start_token_id`` is a field of the combined config (the reference would hand it
    to the decoder as ``start_token_id``, where nothing reads it).
    """
    encoder_kwargs: dict[str, Any] = {}
    decoder_kwargs: dict[str, Any] = {}
    combined: dict[str, Any] = {}
    for name, value in kwargs.items():
        if name == "decoder_start_token_id":
            combined[name] = value
        elif name.startswith("encoder_"):
            encoder_kwargs[name[len("encoder_") :]] = value
        elif name.startswith("decoder_"):
            decoder_kwargs[name[len("decoder_") :]] = value
        else:
            combined[name] = value
    return encoder_kwargs, decoder_kwargs, combined


def _load_encoder(ref: str | os.PathLike[str] | None, kwargs: dict[str, Any]) -> Any:
    from mmspeech.models.wav2vec2.config import CONFIG_CLASSES
    from mmspeech.models.wav2vec2.model import HubertModel, Wav2Vec2Model

    model = kwargs.pop("model", None)
    if model is not None:
        if not isinstance(model, Wav2Vec2Model | HubertModel):
            raise ConfigError(
                f"encoder_model must be a Wav2Vec2Model or HubertModel, got {type(model).__name__}."
            )
        return model
    if ref is None:
        raise ConfigError("Give an encoder checkpoint (encoder_ref) or encoder_model=<module>.")
    if "config" in kwargs:
        raise ConfigError(
            "encoder_config is not supported; pass the fields to change as "
            "encoder_<field>=value (e.g. encoder_add_adapter=True)."
        )
    files = resolve(ref, **{k: kwargs[k] for k in HUB_FIELDS if k in kwargs})
    data = files.read_json("config.json") or {}
    model_type = data.get("model_type")
    if model_type not in CONFIG_CLASSES:
        raise ConfigError(
            f"{ref} has model_type {model_type!r}; a speech encoder must be one of "
            f"{', '.join(CONFIG_CLASSES)}."
        )
    encoder_class: type[Wav2Vec2Model] = HubertModel if model_type == "hubert" else Wav2Vec2Model
    return encoder_class.from_pretrained(ref, **kwargs)


def _load_decoder(
    ref: str | os.PathLike[str] | None, kwargs: dict[str, Any]
) -> tuple[TextDecoder, list[str]]:
    from mmspeech.models.speech_encoder_decoder.config import DECODER_CONFIGS
    from mmspeech.models.speech_encoder_decoder.model import build_decoder

    model = kwargs.pop("model", None)
    if model is not None:
        return model, []
    if ref is None:
        raise ConfigError("Give a decoder checkpoint (decoder_ref) or decoder_model=<module>.")
    files = resolve(ref, **{k: kwargs.pop(k) for k in HUB_FIELDS if k in kwargs})
    data = files.read_json("config.json") or {}
    model_type = data.get("model_type")
    config_class = DECODER_CONFIGS.get(str(model_type))
    if config_class is None:
        raise ConfigError(
            f"{ref} has model_type {model_type!r}; a text decoder must be one of "
            f"{', '.join(DECODER_CONFIGS)}."
        )
    config = kwargs.pop("config", None)
    if config is None:
        config = read_config(files, config_class, kwargs)
    if not (config.is_decoder and config.add_cross_attention):
        logger.info("Initialising %s as a causal decoder with cross-attention", ref)
    changes: dict[str, Any] = {"is_decoder": True, "add_cross_attention": True}
    if model_type in ("bart", "mbart"):
        changes["is_encoder_decoder"] = False  # the decoder half alone, as the reference's
    config = config.replace(**changes)
    with torch.device("meta"):
        decoder = build_decoder(config)
    state = read_state_dict(files.weight_files())
    created = load_decoder(decoder, state, str(model_type), str(files.ref))
    return decoder, created


def load_encoder_decoder(
    cls: type[SpeechEncoderDecoderModel],
    encoder_ref: str | os.PathLike[str] | None,
    decoder_ref: str | os.PathLike[str] | None,
    *,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    compute_type: str | None = None,
    **kwargs: Any,
) -> SpeechEncoderDecoderModel:
    """A speech encoder-decoder from two pretrained checkpoints; see
    :meth:`SpeechEncoderDecoderModel.from_encoder_decoder_pretrained`."""
    from mmspeech.models.speech_encoder_decoder.config import SpeechEncoderDecoderConfig

    encoder_kwargs, decoder_kwargs, combined = _split_kwargs(kwargs)
    encoder: Wav2Vec2Model | HubertModel = _load_encoder(encoder_ref, encoder_kwargs)
    decoder, created = _load_decoder(decoder_ref, decoder_kwargs)
    config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
        encoder.config, decoder.config, **combined
    )
    with torch.device("meta"):
        model = cls(config)
    encoder.config, decoder.config = config.encoder, config.decoder
    model.encoder, model.decoder = encoder, decoder
    new_keys = [f"decoder.{key}" for key in created]
    if model.enc_to_dec_proj is not None:
        proj_keys = ["enc_to_dec_proj.weight", "enc_to_dec_proj.bias"]
        _init_fresh(model, proj_keys, config.initializer_range)
        new_keys += proj_keys
    if new_keys:
        logger.warning(
            "Newly initialised (train them before use): %s%s",
            ", ".join(new_keys[:20]),
            f" and {len(new_keys) - 20} more" if len(new_keys) > 20 else "",
        )
    model.newly_initialized_keys = new_keys
    load = load_options(device=device, dtype=dtype, compute_type=compute_type)
    target = load.torch_device(default="cpu")
    finish_load(model, target, resolve_compute_type(compute_type, target), load.dtype)
    return model
