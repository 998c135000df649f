"""Greedy search, sampling and beam search in JAX, jit-compiled with static shapes.

The options and their defaults are our PyTorch ``generate``'s (:class:`GenerationOptions`,
checkpoint settings first). The decoder cache is preallocated to the maximum length and the
search runs in one ``lax.while_loop``, so a second call with the same input shape and options
reuses the compiled program. Beam search is step for step :mod:`mmspeech.generation.beam`, so
greedy and beam token ids equal the PyTorch ones.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from mmspeech.flax.cache import DecoderCache, reorder_cache
from mmspeech.flax.layers import Array
from mmspeech.flax.modules import SpeechEncoderDecoderModule, empty_decoder_cache
from mmspeech.generation.options import GenerationOptions, model_defaults

if TYPE_CHECKING:
    from mmspeech.flax.model import FlaxSpeechEncoderDecoderModel, Params

NEG = -1.0e9  # the PyTorch beam search's "impossible" score
INF = float("inf")
TRACES: collections.Counter[str] = collections.Counter()  # traces per search kind (diagnostics)


@dataclass(frozen=True)
class Plan:
    """The resolved options as static (hashable) values of the compiled search."""

    max_length: int  # total output length, start token included
    min_length: int  # eos is forbidden while fewer tokens are decoded
    eos: tuple[int, ...]
    pad: int | None  # fills finished rows (greedy)
    forced_bos: int | None
    forced_eos: tuple[int, ...]
    num_beams: int
    do_sample: bool
    temperature: float
    top_k: int  # 0: off
    top_p: float
    length_penalty: float
    early_stopping: bool | str
    num_return_sequences: int

    @classmethod
    def from_options(cls, options: GenerationOptions) -> Plan:
        if options.do_sample:
            if options.temperature <= 0:
                raise ValueError(f"temperature must be > 0, got {options.temperature}.")
            if options.top_k is not None and options.top_k < 0:
                raise ValueError(f"top_k must be a positive integer, got {options.top_k}.")
            if not 0.0 <= options.top_p <= 1.0:
                raise ValueError(f"top_p must be in [0, 1], got {options.top_p}.")
        forced = options.forced_eos_token_id
        forced_eos = () if forced is None else (forced,) if isinstance(forced, int) else forced
        return cls(
            max_length=options.total_length(1),
            min_length=options.minimum_length(1),
            eos=tuple(options.eos_ids),
            pad=options.padding_id,
            forced_bos=options.forced_bos_token_id,
            forced_eos=tuple(forced_eos),
            num_beams=options.num_beams,
            do_sample=options.do_sample,
            temperature=float(options.temperature),
            top_k=int(options.top_k or 0),
            top_p=float(options.top_p),
            length_penalty=float(options.length_penalty),
            early_stopping=options.early_stopping,
            num_return_sequences=options.num_return_sequences,
        )


def resolve_options(model: FlaxSpeechEncoderDecoderModel, **overrides: Any) -> GenerationOptions:
    """The checkpoint's generation settings (``generation_config.json``, else its config),
    with ``overrides`` applied: the same resolution as the PyTorch ``generate``."""
    defaults = model_defaults(model.config.to_dict(), model.generation_config)
    return defaults.updated(overrides)


# -- logit filters (the PyTorch ones, on jnp arrays; ``length`` is the tokens decoded so far)


def _force(scores: Array, ids: tuple[int, ...]) -> Array:
    forced = jnp.full_like(scores, -INF)
    return forced.at[:, list(ids)].set(0.0)


def apply_filters(plan: Plan, scores: Array, length: Array, min_keep: int = 1) -> Array:
    """Min length, forced tokens, then (sampling) temperature, top-k and top-p."""
    if plan.min_length > 0 and plan.eos:
        blocked = scores.at[:, list(plan.eos)].set(-INF)
        scores = jnp.where(length < plan.min_length, blocked, scores)
    if plan.forced_bos is not None:
        scores = jnp.where(length == 1, _force(scores, (plan.forced_bos,)), scores)
    if plan.forced_eos:
        scores = jnp.where(length == plan.max_length - 1, _force(scores, plan.forced_eos), scores)
    if not plan.do_sample:
        return scores
    if plan.temperature != 1.0:
        scores = scores / plan.temperature
    if plan.top_k:
        k = min(max(plan.top_k, min_keep), scores.shape[-1])
        threshold = jax.lax.top_k(scores, k)[0][..., -1:]
        scores = jnp.where(scores < threshold, -INF, scores)
    if plan.top_p < 1.0:
        order = jnp.argsort(scores, axis=-1)  # ascending
        ascending = jnp.take_along_axis(scores, order, axis=-1)
        cumulative = jnp.cumsum(jax.nn.softmax(ascending, axis=-1), axis=-1)
        drop_sorted = cumulative <= (1 - plan.top_p)
        drop_sorted = drop_sorted.at[..., -min_keep:].set(False)
        drop = (
            jnp.zeros_like(drop_sorted)
            .at[jnp.arange(scores.shape[0])[:, None], order]
            .set(drop_sorted)
        )
        scores = jnp.where(drop, -INF, scores)
    return scores


# -- the searches


def _gather(array: Array, indices: Array) -> Array:
    """``array[b, indices[b, k], ...]`` for (B, N, ...) and (B, K) -> (B, K, ...)."""
    expanded = indices.reshape(indices.shape + (1,) * (array.ndim - 2))
    return jnp.take_along_axis(array, expanded, axis=1)


class _Step:
    """One decoder step over the cache: float32 logits (N, vocab) of the token after ``ids``."""

    def __init__(self, module: SpeechEncoderDecoderModule, variables: Any, hidden: Array,
                 frame_mask: Array):  # fmt: skip
        self.module, self.variables = module, variables
        self.hidden, self.frame_mask = hidden, frame_mask

    def __call__(
        self, ids: Array, cache: DecoderCache, offset: Array | int
    ) -> tuple[Array, DecoderCache]:
        out: Any = self.module.apply(
            self.variables, ids, self.hidden, self.frame_mask, None, cache, offset,
            method=SpeechEncoderDecoderModule.decode,
        )  # fmt: skip
        logits, new_cache = out
        return logits[:, -1, :].astype(jnp.float32), new_cache


def greedy(
    module: SpeechEncoderDecoderModule,
    variables: Any,
    hidden: Array,
    frame_mask: Array,
    start: int,
    key: Array,
    plan: Plan,
) -> tuple[Array, Array]:
    """Greedy search or sampling: (B, max_length) ids and the length actually decoded."""
    TRACES["greedy"] += 1
    batch, total = hidden.shape[0], plan.max_length
    step = _Step(module, variables, hidden, frame_mask)
    tokens = jnp.full((batch, total), start, jnp.int32)
    logits, cache = step(tokens[:, :1], empty_decoder_cache(module.config, batch, total), 0)
    eos = jnp.asarray(plan.eos, jnp.int32)

    def body(state: tuple[Any, ...]) -> tuple[Any, ...]:
        tokens, length, unfinished, logits, cache = state
        scores = apply_filters(plan, logits, length)
        if plan.do_sample:
            chosen = jax.random.categorical(jax.random.fold_in(key, length), scores, axis=-1)
        else:
            chosen = jnp.argmax(scores, axis=-1)
        chosen = chosen.astype(jnp.int32)
        if plan.eos:
            assert plan.pad is not None
            chosen = jnp.where(unfinished, chosen, plan.pad)
            unfinished = unfinished & ~jnp.isin(chosen, eos)
        tokens = jax.lax.dynamic_update_slice(tokens, chosen[:, None], (0, length))
        logits, cache = step(chosen[:, None], cache, length)
        return tokens, length + 1, unfinished, logits, cache

    def cond(state: tuple[Any, ...]) -> Array:
        _, length, unfinished, _, _ = state
        return (length < total) & unfinished.any()

    state = (tokens, jnp.int32(1), jnp.ones(batch, bool), logits, cache)
    tokens, length, *_ = jax.lax.while_loop(cond, body, state)
    return tokens, length


def beam(
    module: SpeechEncoderDecoderModule,
    variables: Any,
    hidden: Array,
    frame_mask: Array,
    start: int,
    key: Array,
    plan: Plan,
) -> tuple[Array, Array]:
    """Beam search (or beam sampling): the best ``num_return_sequences`` per input, best
    first, as (B * num_return_sequences, max_length) ids and the length decoded."""
    TRACES["beam"] += 1
    num_beams, total, prompt = plan.num_beams, plan.max_length, 1
    batch = hidden.shape[0]
    keep = max(2, 1 + len(plan.eos)) * num_beams
    top_beams = jnp.arange(keep) < num_beams
    batch_offset = jnp.arange(batch)[:, None] * num_beams
    # the penalties as the PyTorch code computes them (Python floats, then float32)
    lp = plan.length_penalty
    penalty = jnp.asarray([float(n) ** lp if n else 1.0 for n in range(total + 1)], jnp.float32)
    eos = jnp.asarray(plan.eos, jnp.int32)
    fill = -1 if not plan.eos else (plan.pad or plan.eos[0])

    step = _Step(
        module, variables, jnp.repeat(hidden, num_beams, 0), jnp.repeat(frame_mask, num_beams, 0)
    )
    running = jnp.full((batch, num_beams, total), fill, jnp.int32).at[:, :, 0].set(start)
    cache = empty_decoder_cache(module.config, batch * num_beams, total)
    logits, cache = step(running[:, :, 0].reshape(-1, 1), cache, 0)
    sources = jnp.full((batch, num_beams, total - prompt), -1, jnp.int32)
    state = dict(
        running=running,
        finished=running,
        running_scores=jnp.zeros((batch, num_beams)).at[:, 1:].set(NEG),
        finished_scores=jnp.full((batch, num_beams), NEG),
        is_finished=jnp.zeros((batch, num_beams), bool),
        running_sources=sources,
        finished_sources=sources,
        improvable=jnp.ones((batch, 1), bool),
        length=jnp.int32(prompt),
        done=jnp.bool_(False),
        logits=logits,
        cache=cache,
    )
    min_keep = max(2, 1 + len(plan.eos))

    def body(s: dict[str, Any]) -> dict[str, Any]:
        length = s["length"]
        log_probs = apply_filters(plan, jax.nn.log_softmax(s["logits"], -1), length, min_keep)
        vocab = log_probs.shape[-1]
        totals = log_probs.reshape(batch, num_beams, vocab) + s["running_scores"][:, :, None]
        flat = totals.reshape(batch, -1)
        if plan.do_sample:  # `keep` draws without replacement (Gumbel top-k)
            gumbel = jax.random.gumbel(jax.random.fold_in(key, length), flat.shape)
            top_indices = jax.lax.top_k(jax.nn.log_softmax(flat, -1) + gumbel, keep)[1]
            top_scores = jnp.take_along_axis(flat, top_indices, axis=1)
        else:
            top_scores, top_indices = jax.lax.top_k(flat, keep)
        source_beam = top_indices // vocab
        top_sequences = _gather(s["running"], source_beam)
        top_sequences = top_sequences.at[:, :, length].set(top_indices % vocab)
        top_sources = _gather(s["running_sources"], source_beam)
        top_sources = top_sources.at[:, :, length - prompt].set(source_beam + batch_offset)
        new_tokens = top_sequences[:, :, length]
        ends = jnp.isin(new_tokens, eos) if plan.eos else jnp.zeros((batch, keep), bool)
        ends = ends | (length + 1 >= total)

        open_scores = top_scores + ends * NEG
        chosen = jax.lax.top_k(open_scores, num_beams)[1]
        running = _gather(top_sequences, chosen)
        running_scores = _gather(open_scores, chosen)
        running_sources = _gather(top_sources, chosen)

        just_finished = ends & top_beams[None, :]
        candidate = top_scores / penalty[length + 1 - prompt]
        batch_full = s["is_finished"].all(-1, keepdims=True) & (plan.early_stopping is True)
        candidate = candidate + batch_full * NEG + (~s["improvable"]) * NEG
        candidate = candidate + (~just_finished) * NEG
        merged = jnp.concatenate([s["finished_scores"], candidate], 1)
        best = jax.lax.top_k(merged, num_beams)[1]
        finished = _gather(jnp.concatenate([s["finished"], top_sequences], 1), best)
        finished_scores = _gather(merged, best)
        finished_sources = _gather(jnp.concatenate([s["finished_sources"], top_sources], 1), best)
        is_finished = _gather(jnp.concatenate([s["is_finished"], just_finished], 1), best)

        cache = reorder_cache(s["cache"], running_sources[:, :, length - prompt].reshape(-1))
        length = length + 1
        if plan.early_stopping == "never" and lp > 0.0:
            best_length = jnp.int32(total - prompt)
        else:
            best_length = length - prompt
        best_running = running_scores[:, :1] / penalty[best_length]
        worst = jnp.where(is_finished, finished_scores.min(1, keepdims=True), NEG)
        improvable = s["improvable"] & (best_running > worst).any(-1, keepdims=True)
        all_closed = is_finished.all() & (plan.early_stopping is True)
        done = ~improvable.any() | all_closed | ends.all()
        logits, cache = step(running[:, :, length - 1].reshape(-1, 1), cache, length - 1)
        return dict(
            running=running, finished=finished, running_scores=running_scores,
            finished_scores=finished_scores, is_finished=is_finished,
            running_sources=running_sources, finished_sources=finished_sources,
            improvable=improvable, length=length, done=done, logits=logits, cache=cache,
        )  # fmt: skip

    s = jax.lax.while_loop(lambda s: ~s["done"], body, state)
    count = plan.num_return_sequences
    sequences = s["finished"][:, :count].reshape(batch * count, total)
    generated = (s["finished_sources"][:, :count] >= 0).reshape(batch * count, -1).sum(1).max()
    return sequences, prompt + generated


def _search(
    module: SpeechEncoderDecoderModule,
    variables: Any,
    values: Array,
    mask: Array,
    key: Array,
    start: int,
    plan: Plan,
) -> tuple[Array, Array]:
    encoded: Any = module.apply(variables, values, mask, method=SpeechEncoderDecoderModule.encode)
    hidden, frame_mask = encoded
    search = greedy if plan.num_beams == 1 else beam
    return search(module, variables, hidden, frame_mask, start, key, plan)


def generate(
    model: FlaxSpeechEncoderDecoderModel,
    inputs: Any,
    attention_mask: Any | None,
    params: Params | None,
    prng_key: Array | None,
    **overrides: Any,
) -> np.ndarray:
    """See :meth:`FlaxSpeechEncoderDecoderModel.generate`."""
    options = resolve_options(model, **overrides)
    if options.num_beams == 1 and options.num_return_sequences != 1:
        raise ValueError("Greedy search returns one sequence per input; use num_beams > 1.")
    if options.num_return_sequences > options.num_beams:
        raise ValueError(
            f"num_return_sequences ({options.num_return_sequences}) must be <= num_beams "
            f"({options.num_beams})."
        )
    plan = Plan.from_options(options)
    if options.do_sample and prng_key is None:
        if options.seed is None:
            raise ValueError(
                "Sampling in JAX needs a key: pass prng_key=jax.random.key(...) or seed=..."
            )
        prng_key = jax.random.key(options.seed)
    key = prng_key if prng_key is not None else jax.random.key(0)
    values, mask = model.prepare_inputs(inputs, attention_mask)
    run = model._compile(
        "generate",
        lambda: jax.jit(
            lambda variables, values, mask, key, start, plan: _search(
                model.module, variables, values, mask, key, start, plan
            ),
            static_argnames=("start", "plan"),
        ),
    )
    tokens, length = run(
        model._variables(params), values, mask, key, start=options.start_token_id, plan=plan
    )
    return np.asarray(tokens)[:, : int(length)]
