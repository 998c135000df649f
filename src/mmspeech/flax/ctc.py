"""``FlaxWav2Vec2ForCTC``: MMS speech recognition in JAX, with its per-language adapters.

The encoder of :mod:`mmspeech.flax.wav2vec2` under the checkpoint's prefix (``wav2vec2`` or
``hubert``) and the ``lm_head`` over a language's characters. ``load_adapter(lang)`` reads
``adapter.<lang>.safetensors`` as the PyTorch model does and resizes the head to that
language's vocabulary.
"""

from __future__ import annotations

import logging
import os
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmspeech.checkpoints.loading import FAMILY_KEYS, read_config
from mmspeech.checkpoints.options import HUB_FIELDS as HUB_KWARGS
from mmspeech.checkpoints.resolve import ModelFiles, resolve
from mmspeech.errors import CheckpointError, ConfigError
from mmspeech.flax.layers import Array, as_jax, dense
from mmspeech.flax.wav2vec2 import Wav2Vec2Encoder, receptive_field
from mmspeech.flax.weights import flatten, fold_weight_norms, from_state, read_state, to_state
from mmspeech.models.wav2vec2.config import CONFIG_CLASSES, Wav2Vec2Config

logger = logging.getLogger(__name__)


class Wav2Vec2CTCModule(nn.Module):
    """Encoder (under ``prefix``) + dropout + ``lm_head``."""

    config: Wav2Vec2Config
    prefix: str = "wav2vec2"

    @nn.compact
    def __call__(
        self, input_values: Array, attention_mask: Array, deterministic: bool = True
    ) -> tuple[Array, Array]:
        """(logits (B, frames, vocab_size), frame mask (B, frames))."""
        config = self.config
        assert config.vocab_size is not None
        hidden, mask = Wav2Vec2Encoder(config, name=self.prefix)(
            input_values, attention_mask, deterministic
        )
        hidden = nn.Dropout(config.final_dropout)(hidden, deterministic)
        return dense(config.vocab_size, "lm_head", config.initializer_range)(hidden), mask


class FlaxCTCOutput(NamedTuple):
    logits: Array  # (B, frames, vocab_size)
    frame_mask: Array  # (B, frames) bool, True on valid frames


class FlaxWav2Vec2ForCTC:
    """wav2vec 2.0 / HuBERT + CTC head, from the PyTorch ``Wav2Vec2ForCTC`` checkpoints."""

    def __init__(
        self,
        config: Wav2Vec2Config,
        params: dict[str, Any] | None = None,
        *,
        seed: int = 0,
        batch_stats: dict[str, Any] | None = None,
    ):
        if config.vocab_size is None:
            raise ConfigError("A CTC model needs config.vocab_size (the CTC vocabulary size).")
        self.config = config
        self.module = Wav2Vec2CTCModule(config, config.model_type)
        self.target_lang: str | None = None
        self._files: ModelFiles | None = None
        if params is None:
            variables = jax.jit(self.module.init)(jax.random.key(seed), *self._dummy())
            params, batch_stats = variables["params"], variables.get("batch_stats")
        self.params = jax.tree_util.tree_map(jnp.asarray, params)
        self.batch_stats = jax.tree_util.tree_map(jnp.asarray, batch_stats or {})
        self._forward = jax.jit(self.module.apply)

    def _dummy(self) -> tuple[Array, Array]:
        samples = 2 * receptive_field(self.config)
        return jnp.zeros((1, samples)), jnp.ones((1, samples), jnp.int32)

    def _variables(self, params: dict[str, Any] | None = None) -> dict[str, Any]:
        variables = {"params": self.params if params is None else params}
        if self.batch_stats:
            variables["batch_stats"] = self.batch_stats
        return variables

    @staticmethod
    def _shapes(config: Wav2Vec2Config) -> dict[str, Any]:
        module = Wav2Vec2CTCModule(config, config.model_type)
        samples = 2 * receptive_field(config)
        return dict(
            jax.eval_shape(
                module.init, jax.random.key(0), jnp.zeros((1, samples)),
                jnp.ones((1, samples), jnp.int32),
            )
        )  # fmt: skip

    @classmethod
    def from_pretrained(
        cls, ref: str | os.PathLike[str], *, target_lang: str | None = None, **kwargs: Any
    ) -> FlaxWav2Vec2ForCTC:
        """Load a ``Wav2Vec2ForCTC`` / ``HubertForCTC`` checkpoint (directory or hub id);
        ``target_lang`` then loads that language's adapter (MMS)."""
        unknown = sorted(set(kwargs) - set(HUB_KWARGS))
        if unknown:
            raise TypeError(f"from_pretrained() got unexpected keyword arguments: {unknown}")
        files = resolve(ref, **kwargs)
        data = files.read_json("config.json") or {}
        config_class = CONFIG_CLASSES.get(str(data.get("model_type")))
        if config_class is None:
            raise CheckpointError(
                f"{files.ref} has model_type {data.get('model_type')!r}; FlaxWav2Vec2ForCTC "
                f"loads {', '.join(CONFIG_CLASSES)} checkpoints."
            )
        config = read_config(files, config_class, {})
        state = read_state(files.weight_files())
        fold_weight_norms(state)
        shapes = cls._shapes(config)
        expected = set(flatten(shapes))
        prefix = f"{config.model_type}."
        droppable = tuple(prefix + p for p in FAMILY_KEYS[config.model_type].droppable)
        for key in [k for k in state if k not in expected]:
            if key.startswith(droppable) or key.endswith("num_batches_tracked"):
                del state[key]
        variables = from_state(state, shapes, str(files.ref))
        model = cls(config, variables["params"], batch_stats=variables.get("batch_stats"))
        model._files = files
        if target_lang is not None:
            if config.adapter_attn_dim is None:
                raise ConfigError(
                    f"target_lang={target_lang!r} was given, but {files.ref} has no language "
                    "adapters (adapter_attn_dim is not set in its config)."
                )
            model.load_adapter(target_lang)
        return model

    def load_adapter(self, target_lang: str) -> None:
        """Switch to ``target_lang``: its adapter layers and head (resized to its vocabulary)."""
        from mmspeech.checkpoints.adapters import read_adapter

        if self._files is None:
            raise ConfigError("Load the model with from_pretrained(...) to load adapters.")
        if self.config.adapter_attn_dim is None:
            raise ConfigError("This checkpoint has no language adapters (adapter_attn_dim).")
        tensors = {k: v.float().numpy() for k, v in read_adapter(self._files, target_lang).items()}
        if "lm_head.weight" not in tensors:
            raise CheckpointError(f"The {target_lang} adapter file has no lm_head.weight.")
        vocab_size = int(tensors["lm_head.weight"].shape[0])
        config = self.config.replace(vocab_size=vocab_size)
        state = to_state(self._variables())
        unknown = sorted(set(tensors) - set(state))
        if unknown:
            raise CheckpointError(
                f"The {target_lang} adapter file holds tensors this model has no place for: "
                + ", ".join(unknown[:10])
            )
        state.update(tensors)
        variables = from_state(state, self._shapes(config), f"the {target_lang} adapter")
        if vocab_size != self.config.vocab_size:
            logger.info("Output head resized to %d tokens for %s", vocab_size, target_lang)
            self.config = config
            self.module = Wav2Vec2CTCModule(config, config.model_type)
            self._forward = jax.jit(self.module.apply)
        self.params = jax.tree_util.tree_map(jnp.asarray, variables["params"])
        self.target_lang = target_lang

    def __call__(
        self, inputs: Any, attention_mask: Any | None = None, params: dict[str, Any] | None = None
    ) -> FlaxCTCOutput:
        """Per-frame logits over the CTC vocabulary for (B, samples) waveforms."""
        values = as_jax(inputs, jnp.float32)
        if values.ndim == 1:
            values = values[None]
        mask = (
            jnp.ones(values.shape, jnp.int32)
            if attention_mask is None
            else as_jax(attention_mask, jnp.int32).reshape(values.shape)
        )
        logits, frame_mask = self._forward(self._variables(params), values, mask)
        return FlaxCTCOutput(logits, frame_mask)
