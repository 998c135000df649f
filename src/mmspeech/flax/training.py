"""Fine-tuning in JAX: a jit-compiled optax train step over the model's loss.

The loss is :meth:`FlaxSpeechEncoderDecoderModel.loss_fn` (labels shifted right with the
decoder start token, -100 ignored), differentiated with ``jax.value_and_grad``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax

if TYPE_CHECKING:
    import optax

    from mmspeech.flax.model import FlaxSpeechEncoderDecoderModel

TrainStep = Callable[..., tuple[Any, Any, jax.Array]]


def make_train_step(
    model: FlaxSpeechEncoderDecoderModel, optimizer: optax.GradientTransformation
) -> TrainStep:
    """A compiled ``step(params, opt_state, inputs, attention_mask, labels, dropout_rng)``
    returning ``(params, opt_state, loss)``; dropout is on (``train=True``).

    Args:
        model: gives the loss (its own ``params`` are not changed).
        optimizer: e.g. ``optax.adamw(1e-4)``; ``opt_state = optimizer.init(params)``.
    """
    import optax

    def step(
        params: Any,
        opt_state: Any,
        inputs: jax.Array,
        attention_mask: jax.Array,
        labels: jax.Array,
        dropout_rng: jax.Array,
    ) -> tuple[Any, Any, jax.Array]:
        loss, grads = jax.value_and_grad(model.loss_fn)(
            params, inputs, attention_mask, labels, dropout_rng, True
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return jax.jit(step)
