"""``FlaxSpeechEncoderDecoderModel``: the linen module, its parameters and the documented API.

The parameters are a plain pytree (``model.params``) named as the PyTorch checkpoint; every
method takes ``params=`` to run other parameters (fine-tuning, sharded copies). Computations are
jit-compiled once per input shape and reused.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mmspeech.errors import AudioError, ConfigError
from mmspeech.flax.cache import DecoderCache
from mmspeech.flax.layers import Array, as_jax
from mmspeech.flax.modules import (
    SpeechEncoderDecoderModule,
    cross_entropy,
    shift_tokens_right,
)
from mmspeech.flax.wav2vec2 import receptive_field
from mmspeech.models.speech_encoder_decoder.config import SpeechEncoderDecoderConfig

logger = logging.getLogger(__name__)

Params = dict[str, Any]


def dummy_inputs(
    config: SpeechEncoderDecoderConfig, input_shape: tuple[int, int] | None = None
) -> tuple[Array, Array, Array]:
    """Inputs that trace the module: (B, samples) audio, its mask, (B, 2) decoder ids."""
    batch, samples = input_shape or (1, 2 * receptive_field(config.encoder))
    return (
        jnp.zeros((batch, samples), jnp.float32),
        jnp.ones((batch, samples), jnp.int32),
        jnp.zeros((batch, 2), jnp.int32),
    )


def variable_shapes(config: SpeechEncoderDecoderConfig) -> dict[str, Any]:
    """The module's variables as shapes and dtypes, without computing them."""
    module = SpeechEncoderDecoderModule(config)
    return dict(jax.eval_shape(module.init, jax.random.key(0), *dummy_inputs(config)))


class FlaxEncoded(NamedTuple):
    """What the decoder attends to, computed once per input batch."""

    hidden_states: Array  # (B, S, decoder hidden_size), after enc_to_dec_proj
    frame_mask: Array  # (B, S) bool, True on valid frames


class FlaxSeq2SeqOutput(NamedTuple):
    logits: Array  # (B, T, vocab_size)
    loss: Array | None = None  # mean token cross-entropy when labels were given
    encoder_last_hidden_state: Array | None = None  # (B, S, C) with output_hidden_states
    encoder_frame_mask: Array | None = None  # (B, S) bool with output_hidden_states


class FlaxSpeechEncoderDecoderModel:
    """A wav2vec 2.0 / HuBERT encoder and a BERT, GPT-2 or BART/mBART decoder, in JAX.

    ``FlaxSpeechEncoderDecoderModel(config)`` builds random weights;
    ``from_pretrained(ref)`` loads a combined checkpoint (the PyTorch class's files);
    ``from_encoder_decoder_pretrained(encoder_ref, decoder_ref)`` joins two pretrained ones.
    """

    def __init__(
        self,
        config: SpeechEncoderDecoderConfig,
        params: Params | None = None,
        *,
        seed: int = 0,
        batch_stats: Params | None = None,
    ):
        if not isinstance(config, SpeechEncoderDecoderConfig):
            raise ConfigError(
                "FlaxSpeechEncoderDecoderModel needs a SpeechEncoderDecoderConfig, "
                f"got {type(config).__name__}."
            )
        self.config = config
        self.module = SpeechEncoderDecoderModule(config)
        # checkpoint names of the weights from_encoder_decoder_pretrained created (to train)
        self.newly_initialized_keys: list[str] = []
        self.generation_config: dict[str, Any] | None = None  # generation_config.json
        self._compiled: dict[str, Callable[..., Any]] = {}
        if params is None:
            variables = self._init_variables(jax.random.key(seed))
            params = variables["params"]
            batch_stats = variables.get("batch_stats", batch_stats)
        elif batch_stats is None and getattr(config.encoder, "conv_pos_batch_norm", False):
            raise ConfigError(
                "This encoder has a BatchNorm position conv: pass its statistics too, "
                "FlaxSpeechEncoderDecoderModel(config, params, batch_stats=model.batch_stats)."
            )
        self.params: Params = jax.tree_util.tree_map(jnp.asarray, params)
        # BatchNorm running statistics (HuBERT's BatchNorm position conv); else empty
        self.batch_stats: Params = jax.tree_util.tree_map(jnp.asarray, batch_stats or {})

    # -- construction

    def _init_variables(
        self, rng: jax.Array, input_shape: tuple[int, int] | None = None
    ) -> dict[str, Any]:
        inputs = dummy_inputs(self.config, input_shape)
        return dict(jax.jit(self.module.init)(rng, *inputs))

    def init_weights(self, rng: jax.Array, input_shape: tuple[int, int] | None = None) -> Params:
        """Fresh random parameters (the ``params`` pytree) for this config.

        Args:
            rng: a ``jax.random.key``.
            input_shape: (batch, samples) of the dummy input used to trace the model.
        """
        return dict(self._init_variables(rng, input_shape)["params"])

    @classmethod
    def from_pretrained(
        cls, ref: str | os.PathLike[str], **kwargs: Any
    ) -> FlaxSpeechEncoderDecoderModel:
        """Load a combined speech encoder-decoder checkpoint (directory or hub id).

        Args:
            ref: what ``SpeechEncoderDecoderModel.from_pretrained`` reads.
            **kwargs: hub settings (``revision``, ``cache_dir``, ``token``,
                ``local_files_only``).
        """
        from mmspeech.checkpoints.options import HUB_FIELDS as HUB_KWARGS
        from mmspeech.flax.loading import load_combined_state, read_combined

        unknown = sorted(set(kwargs) - set(HUB_KWARGS))
        if unknown:
            raise TypeError(f"from_pretrained() got unexpected keyword arguments: {unknown}")
        config, state, files = read_combined(ref, kwargs)
        variables = load_combined_state(state, variable_shapes(config), str(files.ref))
        model = cls(config, variables["params"], batch_stats=variables.get("batch_stats"))
        model.generation_config = files.read_json("generation_config.json")
        return model

    @classmethod
    def from_encoder_decoder_pretrained(
        cls,
        encoder_ref: str | os.PathLike[str],
        decoder_ref: str | os.PathLike[str],
        *,
        seed: int = 0,
        **kwargs: Any,
    ) -> FlaxSpeechEncoderDecoderModel:
        """Join a pretrained speech encoder and a pretrained text decoder (to be fine-tuned).

        The weights neither checkpoint has (cross-attention, a missing LM head,
        ``enc_to_dec_proj``) are created from ``seed``, logged as a warning and listed in
        ``newly_initialized_keys``.

        Args:
            encoder_ref: a wav2vec 2.0 / HuBERT checkpoint (bare, pretraining or CTC layout).
            decoder_ref: a BERT, GPT-2, BART or mBART checkpoint (bare model or any LM layout).
            **kwargs: ``encoder_<name>`` / ``decoder_<name>`` go to that half (config fields,
                hub settings); ``decoder_start_token_id`` and other names are fields of the
                combined config.
        """
        from mmspeech.flax.loading import fill_joined, join_pretrained

        config, state, family = join_pretrained(encoder_ref, decoder_ref, kwargs)
        model = cls(config, seed=seed)
        fresh = {"params": model.params, **({"batch_stats": model.batch_stats}
                                            if model.batch_stats else {})}  # fmt: skip
        source = f"{encoder_ref} + {decoder_ref}"
        variables, created = fill_joined(state, family, fresh, source)
        model._set_variables(variables)
        model.newly_initialized_keys = created
        if created:
            logger.warning(
                "Newly initialised (train them before use): %s%s",
                ", ".join(created[:20]),
                f" and {len(created) - 20} more" if len(created) > 20 else "",
            )
        return model

    def _set_variables(self, variables: dict[str, Any]) -> None:
        self.params = jax.tree_util.tree_map(jnp.asarray, variables["params"])
        self.batch_stats = jax.tree_util.tree_map(jnp.asarray, variables.get("batch_stats", {}))

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` and ``model.safetensors`` that ``SpeechEncoderDecoderModel``
        (ours and the reference) loads."""
        from mmspeech.flax.loading import save_checkpoint

        return save_checkpoint(
            self.config, self._variables(self.params), directory, self.generation_config
        )

    # -- running the model

    def _variables(self, params: Params | None) -> dict[str, Any]:
        variables = {"params": self.params if params is None else params}
        if self.batch_stats:
            variables["batch_stats"] = self.batch_stats
        return variables

    def _compile(self, name: str, build: Callable[[], Callable[..., Any]]) -> Callable[..., Any]:
        """The jit-compiled function ``name`` (built once; jax caches one program per shape)."""
        if name not in self._compiled:
            self._compiled[name] = build()
        return self._compiled[name]

    def prepare_inputs(
        self, inputs: Any, attention_mask: Any | None
    ) -> tuple[jax.Array, jax.Array]:
        """(B, samples) float32 waveforms and int32 mask from arrays (numpy, jax, torch).

        jax arrays stay where they are (sharded across devices, the computation follows them).
        """
        values = as_jax(inputs, jnp.float32)
        if values.ndim == 1:
            values = values[None]
        if values.ndim != 2:
            raise AudioError(f"inputs must be (batch, samples); got shape {tuple(values.shape)}.")
        minimum = receptive_field(self.config.encoder)
        if values.shape[-1] < minimum:
            raise AudioError(
                f"The audio is {values.shape[-1]} samples long; the model needs at least "
                f"{minimum} samples (one frame of {minimum} samples) to produce any output."
            )
        if attention_mask is None:
            mask = jnp.ones(values.shape, jnp.int32)
        else:
            mask = as_jax(attention_mask, jnp.int32).reshape(values.shape)
        return values, mask

    def _rngs(self, train: bool, dropout_rng: jax.Array | None) -> dict[str, jax.Array]:
        if not train:
            return {}
        if dropout_rng is None:
            raise ValueError("train=True applies dropout: pass dropout_rng=jax.random.key(...).")
        return {"dropout": dropout_rng}

    def loss_fn(
        self,
        params: Params,
        inputs: jax.Array,
        attention_mask: jax.Array,
        labels: jax.Array,
        dropout_rng: jax.Array | None = None,
        train: bool = False,
    ) -> jax.Array:
        """Mean token cross-entropy of ``labels`` (B, T), -100 ignored; a pure function of
        ``params`` for ``jax.value_and_grad`` (decoder inputs are the labels shifted right)."""
        labels = jnp.asarray(labels, jnp.int32)
        inputs, attention_mask = jnp.asarray(inputs, jnp.float32), jnp.asarray(attention_mask)
        decoder_input_ids = shift_tokens_right(
            labels, self.config.pad_token_id, self.config.decoder_start_token_id
        )
        logits, _, _ = self.module.apply(  # type: ignore[misc]
            self._variables(params), inputs, attention_mask, decoder_input_ids, None, not train,
            rngs=self._rngs(train, dropout_rng),
        )  # fmt: skip
        return cross_entropy(logits, labels)

    def __call__(
        self,
        inputs: Any,
        attention_mask: Any | None = None,
        decoder_input_ids: Any | None = None,
        decoder_attention_mask: Any | None = None,
        labels: Any | None = None,
        params: Params | None = None,
        dropout_rng: jax.Array | None = None,
        train: bool = False,
        output_hidden_states: bool = False,
    ) -> FlaxSeq2SeqOutput:
        """Teacher-forced logits, and the loss when ``labels`` are given.

        Args:
            inputs: (B, samples) float waveforms, as the feature extractor makes them.
            attention_mask: (B, samples) 1 on real samples, 0 on padding; None if unpadded.
            decoder_input_ids: (B, T) ints; built from ``labels`` when omitted.
            decoder_attention_mask: (B, T) 1 on real tokens; None: all.
            labels: (B, T) target ids, -100 where ignored.
            params: parameters to run instead of ``self.params``.
            dropout_rng, train: dropout (``train=True`` needs a key).
            output_hidden_states: also return the encoder states and their frame mask.
        """
        values, mask = self.prepare_inputs(inputs, attention_mask)
        label_array = None if labels is None else jnp.asarray(np.asarray(labels), jnp.int32)
        if decoder_input_ids is None:
            if label_array is None:
                raise ValueError("Pass decoder_input_ids, or labels to build them from.")
            decoder_input_ids = shift_tokens_right(
                label_array, self.config.pad_token_id, self.config.decoder_start_token_id
            )
        ids = jnp.asarray(np.asarray(decoder_input_ids), jnp.int32)
        decoder_mask = (
            None
            if decoder_attention_mask is None
            else jnp.asarray(np.asarray(decoder_attention_mask), jnp.int32)
        )
        forward = self._compile(
            "forward",
            lambda: jax.jit(
                lambda variables, values, mask, ids, decoder_mask, rngs, train: self.module.apply(
                    variables, values, mask, ids, decoder_mask, not train, rngs=rngs
                ),
                static_argnames=("train",),
            ),
        )
        logits, hidden, frame_mask = forward(
            self._variables(params), values, mask, ids, decoder_mask,
            self._rngs(train, dropout_rng), train=train,
        )  # fmt: skip
        loss = None if label_array is None else cross_entropy(logits, label_array)
        if output_hidden_states:
            return FlaxSeq2SeqOutput(logits, loss, hidden, frame_mask)
        return FlaxSeq2SeqOutput(logits, loss)

    def encode(
        self, inputs: Any, attention_mask: Any | None = None, params: Params | None = None
    ) -> FlaxEncoded:
        """Encoder states in the decoder's width and their frame mask (for :meth:`decode`)."""
        values, mask = self.prepare_inputs(inputs, attention_mask)
        run = self._compile(
            "encode",
            lambda: jax.jit(partial(self.module.apply, method=SpeechEncoderDecoderModule.encode)),
        )
        hidden, frame_mask = run(self._variables(params), values, mask)
        return FlaxEncoded(hidden, frame_mask)

    def decode(
        self,
        decoder_input_ids: Any,
        encoded: FlaxEncoded,
        decoder_attention_mask: Any | None = None,
        cache: DecoderCache | None = None,
        offset: int = 0,
        params: Params | None = None,
    ) -> tuple[jax.Array, DecoderCache | None]:
        """Logits (B, T, vocab) for ``decoder_input_ids`` (B, T) after ``offset`` cached tokens.

        ``cache`` (from :func:`mmspeech.flax.empty_decoder_cache`) is returned updated; None
        decodes without one (teacher forcing).
        """
        ids = jnp.asarray(np.asarray(decoder_input_ids), jnp.int32)
        decoder_mask = (
            None
            if decoder_attention_mask is None
            else jnp.asarray(np.asarray(decoder_attention_mask), jnp.int32)
        )
        run = self._compile(
            "decode",
            lambda: jax.jit(partial(self.module.apply, method=SpeechEncoderDecoderModule.decode)),
        )
        return run(
            self._variables(params), ids, encoded.hidden_states, encoded.frame_mask,
            decoder_mask, cache, jnp.asarray(offset, jnp.int32),
        )  # fmt: skip

    def generate(
        self,
        inputs: Any,
        attention_mask: Any | None = None,
        params: Params | None = None,
        prng_key: jax.Array | None = None,
        **options: Any,
    ) -> np.ndarray:
        """Token ids (B * num_return_sequences, T), starting with the decoder start token.

        Greedy search (default), beam search (``num_beams``) or sampling (``do_sample``, with
        ``prng_key`` or ``seed``); the options and defaults of our PyTorch ``generate``
        (:class:`mmspeech.generation.GenerationOptions`). Compiled once per input shape and
        options.
        """
        from mmspeech.flax.generation import generate

        return generate(self, inputs, attention_mask, params, prng_key, **options)

    def num_parameters(self) -> int:
        return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(self.params))
