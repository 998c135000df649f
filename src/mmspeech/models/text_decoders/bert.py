"""BERT as a causal LM with cross-attention (the reference's ``BertLMHeadModel``).

An autoencoding model used as a decoder: its self-attention is made causal and a cross-attention
block (``crossattention``, randomly initialised when starting from a plain BERT) is added to every
layer. Post-norm blocks; the MLM head (``cls.predictions``) gives the logits.
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
class BertConfig(ModelConfig):
    """BERT (the reference's defaults)."""

    model_type: ClassVar[str] = "bert"

    vocab_size: int = 30522  # rows of the word embedding and the MLM head
    hidden_size: int = 768  # width
    num_hidden_layers: int = 12  # blocks
    num_attention_heads: int = 12  # heads of self- and cross-attention
    intermediate_size: int = 3072  # feed-forward inner width
    hidden_act: str = "gelu"  # feed-forward and head activation
    hidden_dropout_prob: float = 0.1  # residual and embedding dropout
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512  # longest decoder input
    type_vocab_size: int = 2  # segment embeddings (decoding uses segment 0)
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 0
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    use_cache: bool = True
    classifier_dropout: float | None = None
    is_decoder: bool = False  # True: causal self-attention (speech encoder-decoder sets it)
    add_cross_attention: bool = False  # True: cross-attention blocks
    tie_word_embeddings: bool = True  # the MLM head's weight is the word embedding
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size {self.hidden_size} is not divisible by "
                f"num_attention_heads {self.num_attention_heads}."
            )


class BertAttentionHeads(nn.Module):
    """``query``/``key``/``value`` projections and SDPA over a cache (self or cross)."""

    def __init__(self, config: BertConfig, is_cross: bool):
        super().__init__()
        width = config.hidden_size
        self.heads = config.num_attention_heads
        self.dropout = config.attention_probs_dropout_prob
        self.is_cross = is_cross
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width)
        self.value = nn.Linear(width, width)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None,
        bias: torch.Tensor | None,
        cache: LayerCache | None,
    ) -> torch.Tensor:
        """(B, T, C) -> (B, T, C) before the output projection (see ``DecoderAttention``)."""
        query = split_heads(self.query(x), self.heads)  # (B, nh, T, hs)
        if self.is_cross:

            def project() -> tuple[torch.Tensor, torch.Tensor]:
                assert memory is not None
                return split_heads(self.key(memory), self.heads), split_heads(
                    self.value(memory), self.heads
                )

            key, value = cross_keys_values(cache, project)
        else:
            key, value = (
                split_heads(self.key(x), self.heads),
                split_heads(self.value(x), self.heads),
            )
            key, value = extend_self(cache, key, value)
        return attend(query, key, value, bias, self.dropout if self.training else 0.0)


class BertResidualOutput(nn.Module):
    """``dense`` -> dropout -> ``LayerNorm(x + residual)`` (the reference's ``*Output``)."""

    def __init__(self, config: BertConfig, in_width: int):
        super().__init__()
        self.dense = nn.Linear(in_width, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig, is_cross: bool):
        super().__init__()
        self.self = BertAttentionHeads(config, is_cross)
        self.output = BertResidualOutput(config, config.hidden_size)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None,
        bias: torch.Tensor | None,
        cache: LayerCache | None,
    ) -> torch.Tensor:
        return self.output(self.self(x, memory, bias, cache), x)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(x))


class BertLayer(nn.Module):
    """Causal self-attention, cross-attention, feed-forward; each post-norm."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config, is_cross=False)
        self.crossattention = BertAttention(config, is_cross=True)
        self.intermediate = BertIntermediate(config)
        self.output = BertResidualOutput(config, config.intermediate_size)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None,
        self_bias: torch.Tensor | None,
        cross_bias: torch.Tensor | None,
        cache: LayerCache | None,
    ) -> torch.Tensor:
        """(B, T, C) -> (B, T, C)."""
        x = self.attention(x, None, self_bias, cache)
        x = self.crossattention(x, memory, cross_bias, cache)
        return self.output(self.intermediate(x), x)


class BertEmbeddings(nn.Module):
    """Word + segment (always 0) + absolute position embeddings, LayerNorm, dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        width = config.hidden_size
        self.word_embeddings = nn.Embedding(
            config.vocab_size, width, padding_idx=config.pad_token_id
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, width)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, width)
        self.LayerNorm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, past: int) -> torch.Tensor:
        """(B, T) ids after ``past`` cached tokens -> (B, T, C)."""
        positions = torch.arange(past, past + input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings.weight[0]
        x = x + self.position_embeddings(positions)
        return self.dropout(self.LayerNorm(x))


class BertEncoderStack(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))


class BertBody(nn.Module):
    """``bert.*``: embeddings and the layer stack (no pooler in the LM)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoderStack(config)

    def forward(
        self,
        input_ids: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None,
        encoder_bias: torch.Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> torch.Tensor:
        """Hidden states (B, T, C); arguments as ``BartDecoder.forward``."""
        past = cache.length if cache is not None else 0
        x = self.embeddings(input_ids, past)
        self_bias = causal_bias(input_ids.shape[1], past, x.dtype, x.device)
        for index, layer in enumerate(self.encoder.layer):
            layer_cache = cache.layer(index) if cache is not None else None
            x = layer(x, encoder_hidden_states, self_bias, encoder_bias, layer_cache)
        return x


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = activation(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    """``cls.predictions``: transform, then the output weight (tied: the word embedding)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder = (
            None
            if config.tie_word_embeddings
            else nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        )


class BertOnlyMLMHead(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.predictions = BertLMPredictionHead(config)


class BertLMHeadModel(nn.Module):
    """BERT decoder with its MLM head: ``bert.*`` + ``cls.predictions.*``."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertBody(config)
        self.cls = BertOnlyMLMHead(config)

    @property
    def output_weight(self) -> torch.Tensor:
        """(vocab_size, hidden_size) weight of the MLM head."""
        head = self.cls.predictions.decoder
        return self.bert.embeddings.word_embeddings.weight if head is None else head.weight

    def forward(
        self,
        input_ids: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None,
        encoder_bias: torch.Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> torch.Tensor:
        """Next-token logits (B, T, vocab_size)."""
        hidden = self.bert(input_ids, encoder_hidden_states, encoder_bias, cache)
        predictions = self.cls.predictions
        return nn.functional.linear(
            predictions.transform(hidden), self.output_weight, predictions.bias
        )
