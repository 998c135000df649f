"""Text decoders used as causal LMs with cross-attention by speech encoder-decoder models."""

from __future__ import annotations

from mmspeech.models.text_decoders.bart import BartConfig, BartForCausalLM, MBartConfig
from mmspeech.models.text_decoders.bert import BertConfig, BertLMHeadModel
from mmspeech.models.text_decoders.cache import DecoderCache
from mmspeech.models.text_decoders.gpt2 import GPT2Config, GPT2LMHeadModel

__all__ = [
    "BartConfig",
    "BartForCausalLM",
    "BertConfig",
    "BertLMHeadModel",
    "DecoderCache",
    "GPT2Config",
    "GPT2LMHeadModel",
    "MBartConfig",
]
