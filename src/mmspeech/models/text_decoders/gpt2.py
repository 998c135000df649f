"""GPT-2 as a decoder with cross-attention (the reference's ``GPT2LMHeadModel``).

Pre-norm blocks with an added cross-attention (``crossattention`` + ``ln_cross_attn``, randomly
initialised when starting from a plain GPT-2). GPT-2's projections are "Conv1D" layers: their
weights are stored (in, out), transposed relative to ``nn.Linear``, and are kept that way here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from mmspeech.errors import ConfigError
from mmspeech.models.config import ModelConfig
from mmspeech.models.text_decoders.cache import (
    DecoderCache,
    LayerCache,
    causal_bias,
    cross_keys_values,
    extend_self,
    split_heads,
)
from mmspeech.nn.activations import activation
from mmspeech.nn.attention import attend

logger = logging.getLogger(__name__)


@dataclass
class GPT2Config(ModelConfig):
    """GPT-2 (the reference's defaults; HF names ``n_embd`` = hidden size, ``n_layer`` …)."""

    model_type: ClassVar[str] = "gpt2"

    vocab_size: int = 50257  # rows of wte and the LM head
    n_positions: int = 1024  # longest decoder input
    n_embd: int = 768  # width
    n_layer: int = 12  # blocks
    n_head: int = 12  # heads of self- and cross-attention
    n_inner: int | None = None  # feed-forward width (None: 4 * n_embd)
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.1
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    scale_attn_weights: bool = True  # divide attention scores by sqrt(head_dim)
    scale_attn_by_inverse_layer_idx: bool = False  # and by (layer index + 1)
    reorder_and_upcast_attn: bool = False  # float32 scores (SDPA computes float32 anyway on CPU)
    use_cache: bool = True
    bos_token_id: int | None = 50256
    eos_token_id: int | list[int] | None = 50256
    pad_token_id: int | None = None
    is_decoder: bool = False  # kept for the config round trip (GPT-2 is always causal)
    add_cross_attention: bool = False  # True: cross-attention blocks
    tie_word_embeddings: bool = True  # lm_head shares wte's weight
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}.")

    @property
    def hidden_size(self) -> int:
        return self.n_embd


class Conv1D(nn.Module):
    """``x @ weight + bias`` with ``weight`` stored (in, out) as in GPT-2 checkpoints."""

    def __init__(self, out_features: int, in_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features).normal_(std=0.02))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight.t(), self.bias)


class GPT2Attention(nn.Module):
    """Causal self-attention (``c_attn`` -> q, k, v) or cross-attention (``q_attn`` + ``c_attn`` -> k, v)."""  # noqa: E501

    def __init__(self, config: GPT2Config, layer_index: int, is_cross: bool):
        super().__init__()
        width = config.n_embd
        self.heads = config.n_head
        self.head_dim = width // self.heads
        self.is_cross = is_cross
        self.scale = self.head_dim**-0.5 if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            self.scale /= float(layer_index + 1)
        self.dropout = config.attn_pdrop
        if is_cross:
            self.c_attn = Conv1D(2 * width, width)
            self.q_attn = Conv1D(width, width)
        else:
            self.c_attn = Conv1D(3 * width, width)
        self.c_proj = Conv1D(width, width)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None,
        bias: torch.Tensor | None,
        cache: LayerCache | None,
    ) -> torch.Tensor:
        """(B, T, C) -> (B, T, C); ``memory`` (B, S, C) for cross-attention."""
        width = x.shape[-1]
        if self.is_cross:
            query = split_heads(self.q_attn(x), self.heads)  # (B, nh, T, hs)

            def project() -> tuple[torch.Tensor, torch.Tensor]:
                assert memory is not None
                key_states, value_states = self.c_attn(memory).split(width, dim=2)
                return split_heads(key_states, self.heads), split_heads(value_states, self.heads)

            key, value = cross_keys_values(cache, project)
        else:
            query_states, key_states, value_states = self.c_attn(x).split(width, dim=2)
            query, key, value = (
                split_heads(states, self.heads)
                for states in (query_states, key_states, value_states)
            )
            key, value = extend_self(cache, key, value)
        merged = attend(
            query, key, value, bias, self.dropout if self.training else 0.0, scale=self.scale
        )
        return self.resid_dropout(self.c_proj(merged))


class GPT2MLP(nn.Module):
    def __init__(self, config: GPT2Config):
        super().__init__()
        inner = config.n_inner if config.n_inner is not None else 4 * config.n_embd
        self.c_fc = Conv1D(inner, config.n_embd)
        self.act = activation(config.activation_function)
        self.c_proj = Conv1D(config.n_embd, inner)
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class GPT2Block(nn.Module):
    """Pre-norm: self-attention, cross-attention, feed-forward, each with a residual."""

    def __init__(self, config: GPT2Config, layer_index: int):
        super().__init__()
        width, eps = config.n_embd, config.layer_norm_epsilon
        self.ln_1 = nn.LayerNorm(width, eps=eps)
        self.attn = GPT2Attention(config, layer_index, is_cross=False)
        self.ln_cross_attn = nn.LayerNorm(width, eps=eps)
        self.crossattention = GPT2Attention(config, layer_index, is_cross=True)
        self.ln_2 = nn.LayerNorm(width, eps=eps)
        self.mlp = GPT2MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None,
        self_bias: torch.Tensor | None,
        cross_bias: torch.Tensor | None,
        cache: LayerCache | None,
    ) -> torch.Tensor:
        """(B, T, C) -> (B, T, C)."""
        x = x + self.attn(self.ln_1(x), None, self_bias, cache)
        x = x + self.crossattention(self.ln_cross_attn(x), memory, cross_bias, cache)
        return x + self.mlp(self.ln_2(x))


class GPT2Model(nn.Module):
    """``transformer.*``: token and position embeddings, the blocks, the final LayerNorm."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(GPT2Block(config, index) for index in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)

    def forward(
        self,
        input_ids: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None,
        encoder_bias: torch.Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> torch.Tensor:
        """Hidden states (B, T, C); arguments as ``BartDecoder.forward``."""
        past = cache.length if cache is not None else 0
        length = input_ids.shape[1]
        positions = torch.arange(past, past + length, device=input_ids.device)
        x = self.drop(self.wte(input_ids) + self.wpe(positions))
        self_bias = causal_bias(length, past, x.dtype, x.device)
        for index, block in enumerate(self.h):
            layer_cache = cache.layer(index) if cache is not None else None
            x = block(x, encoder_hidden_states, self_bias, encoder_bias, layer_cache)
        return self.ln_f(x)


class GPT2LMHeadModel(nn.Module):
    """GPT-2 with its LM head (tied to ``wte`` by default)."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        self.config = config
        self.transformer = GPT2Model(config)
        self.lm_head = (
            None
            if config.tie_word_embeddings
            else nn.Linear(config.n_embd, config.vocab_size, bias=False)
        )

    @property
    def output_weight(self) -> torch.Tensor:
        """(vocab_size, n_embd) weight of the LM head."""
        return self.transformer.wte.weight if self.lm_head is None else self.lm_head.weight

    def forward(
        self,
        input_ids: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None,
        encoder_bias: torch.Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> torch.Tensor:
        """Next-token logits (B, T, vocab_size)."""
        hidden = self.transformer(input_ids, encoder_hidden_states, encoder_bias, cache)
        return nn.functional.linear(hidden, self.output_weight)
