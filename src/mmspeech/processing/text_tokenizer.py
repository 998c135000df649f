"""Text tokenizers of the decoders a speech encoder-decoder uses (BERT, GPT-2, BART, mBART).

One class, :class:`TextTokenizer`, over two backends: the ``tokenizers`` library (for
``tokenizer.json``, and pipelines assembled here from BERT's ``vocab.txt`` or GPT-2's
``vocab.json`` + ``merges.txt``) and ``sentencepiece`` (mBART's ``sentencepiece.bpe.model``,
see :mod:`mmspeech.processing.text_tokenizer_spm`). Special tokens come from
``tokenizer_config.json``, ``special_tokens_map.json`` and the added tokens.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from mmspeech.checkpoints.options import split_hub
from mmspeech.checkpoints.resolve import ModelFiles, resolve
from mmspeech.errors import ConfigError, MissingDependencyError
from mmspeech.processing.batch import BatchFeature
from mmspeech.processing.text_tokenizer_spm import SentencePieceBackend

logger = logging.getLogger(__name__)

SPECIAL_NAMES = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
# defaults of the reference's tokenizer classes, by file layout
BERT_SPECIALS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}
GPT2_SPECIALS = {
    "bos_token": "<|endoftext|>",
    "eos_token": "<|endoftext|>",
    "unk_token": "<|endoftext|>",
}
MBART_SPECIALS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "cls_token": "<s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}
# punctuation spacing the reference's clean_up_tokenization_spaces removes (WordPiece only)
CLEAN_UPS = (
    (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
    (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
)  # fmt: skip


class Backend(Protocol):
    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str, add_special_tokens: bool, target: bool = False) -> list[int]: ...

    def decode(self, ids: list[int], skip_special_tokens: bool) -> str: ...

    def token_to_id(self, token: str) -> int | None: ...

    def id_to_token(self, index: int) -> str | None: ...


class TokenizersBackend:
    """A ``tokenizers.Tokenizer`` (its own post-processor adds the special tokens)."""

    def __init__(self, tokenizer: Any, clean_up_spaces: bool):
        self.tokenizer = tokenizer
        # the reference skips the clean-up for BPE models (it would corrupt their spacing)
        self.clean_up_spaces = clean_up_spaces and type(tokenizer.model).__name__ != "BPE"

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str, add_special_tokens: bool, target: bool = False) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        text: str = self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
        if self.clean_up_spaces:
            for old, new in CLEAN_UPS:
                text = text.replace(old, new)
        return text

    def token_to_id(self, token: str) -> int | None:
        index = self.tokenizer.token_to_id(token)
        return None if index is None else int(index)

    def id_to_token(self, index: int) -> str | None:
        token = self.tokenizer.id_to_token(index)
        return None if token is None else str(token)


def _tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError as exc:
        raise MissingDependencyError(
            "Text tokenizers need the tokenizers library: pip install 'mmspeech[text]'."
        ) from exc
    return tokenizers


def _special_text(value: Any) -> str | None:
    """A special token as config files spell it: a string or an AddedToken dict."""
    if isinstance(value, dict):
        return str(value.get("content"))
    return None if value is None else str(value)


def bert_wordpiece(vocab_file: Path, settings: dict[str, Any], specials: dict[str, str]) -> Any:
    """BERT's pipeline from ``vocab.txt``: BERT normaliser, WordPiece, ``[CLS] … [SEP]``."""
    tk = _tokenizers()
    with open(vocab_file, encoding="utf-8") as handle:
        vocab = {line.rstrip("\n"): index for index, line in enumerate(handle)}
    tokenizer = tk.Tokenizer(tk.models.WordPiece(vocab, unk_token=specials["unk_token"]))
    tokenizer.normalizer = tk.normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=settings.get("tokenize_chinese_chars", True),
        strip_accents=settings.get("strip_accents"),
        lowercase=settings.get("do_lower_case", True),
    )
    tokenizer.pre_tokenizer = tk.pre_tokenizers.BertPreTokenizer()
    cls, sep = specials["cls_token"], specials["sep_token"]
    tokenizer.post_processor = tk.processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
    )
    tokenizer.decoder = tk.decoders.WordPiece(prefix="##")
    return tokenizer


def gpt2_bpe(vocab_file: Path, merges_file: Path, settings: dict[str, Any]) -> Any:
    """GPT-2's byte-level BPE from ``vocab.json`` + ``merges.txt`` (no special tokens added)."""
    tk = _tokenizers()
    model = tk.models.BPE.from_file(str(vocab_file), str(merges_file))
    tokenizer = tk.Tokenizer(model)
    prefix_space = settings.get("add_prefix_space", False)
    tokenizer.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=prefix_space)
    tokenizer.decoder = tk.decoders.ByteLevel()
    tokenizer.post_processor = tk.processors.ByteLevel(trim_offsets=False)
    return tokenizer


class TextTokenizer:
    """Text <-> token ids for a text decoder, with the reference tokenizers' results.

    Build it with :meth:`from_pretrained` (a directory or hub id holding the tokenizer files).
    """

    def __init__(self, backend: Backend, special_tokens: dict[str, str], extra_special: list[str]):
        self.backend = backend
        self.special_tokens = special_tokens  # "pad_token" -> "<pad>", …
        self.additional_special_tokens = extra_special
        self.padding_side = "right"

    # -- loading

    @classmethod
    def from_pretrained(cls, ref: str | os.PathLike[str], **kwargs: Any) -> TextTokenizer:
        """Read ``tokenizer.json``, else ``vocab.txt`` (BERT), ``vocab.json`` + ``merges.txt``
        (GPT-2) or ``sentencepiece.bpe.model`` (mBART), with the special-token settings.

        Args:
            ref: a directory or hub id.
            **kwargs: ``revision``/``cache_dir``/``token``/``local_files_only``, and settings
                that override ``tokenizer_config.json`` (``src_lang``, ``tgt_lang``, …).
        """
        hub, overrides = split_hub(kwargs)
        files = resolve(ref, **hub)
        settings = {**(files.read_json("tokenizer_config.json") or {}), **overrides}
        mapped = files.read_json("special_tokens_map.json") or {}
        return cls._build(files, settings, mapped)

    @classmethod
    def _build(
        cls, files: ModelFiles, settings: dict[str, Any], mapped: dict[str, Any]
    ) -> TextTokenizer:
        extra = [
            str(_special_text(t))
            for key in ("additional_special_tokens", "extra_special_tokens")
            for source in (mapped, settings)
            for t in (source.get(key) or [])
            if isinstance(source.get(key), list)
        ]
        extra = list(dict.fromkeys(extra))
        named = {
            name: _special_text(settings.get(name, mapped.get(name))) for name in SPECIAL_NAMES
        }
        clean_up = bool(settings.get("clean_up_tokenization_spaces", False))
        tokenizer_class = str(settings.get("tokenizer_class") or "").removesuffix("Fast")
        if (path := files.path("tokenizer.json")) is not None:
            tokenizer = _tokenizers().Tokenizer.from_file(str(path))
            defaults: dict[str, str] = {}
        elif (path := files.path("vocab.txt")) is not None:
            defaults = BERT_SPECIALS
            specials = {**defaults, **{k: v for k, v in named.items() if v is not None}}
            tokenizer = bert_wordpiece(path, settings, specials)
        elif (path := files.path("merges.txt")) is not None and files.path(
            "vocab.json"
        ) is not None:
            defaults = GPT2_SPECIALS
            tokenizer = gpt2_bpe(files.require("vocab.json"), path, settings)
        elif (path := files.path("sentencepiece.bpe.model")) is not None:
            defaults = MBART_SPECIALS
            specials = {**defaults, **{k: v for k, v in named.items() if v is not None}}
            spm = SentencePieceBackend(
                path,
                mbart50=tokenizer_class == "MBart50Tokenizer",
                src_lang=settings.get("src_lang"),
                tgt_lang=settings.get("tgt_lang"),
                extra_special_tokens=[t for t in extra if t not in specials.values()],
            )
            return cls(spm, specials, extra)
        else:
            raise ConfigError(
                f"{files.ref} has no text tokenizer files: expected tokenizer.json, vocab.txt "
                "(BERT), vocab.json + merges.txt (GPT-2) or sentencepiece.bpe.model (mBART)."
            )
        specials = {**defaults, **{k: v for k, v in named.items() if v is not None}}
        added = [
            str(t["content"])
            for t in (settings.get("added_tokens_decoder") or {}).values()
            if isinstance(t, dict) and t.get("special")
        ]
        to_register = list(dict.fromkeys([*specials.values(), *extra, *added]))
        tk = _tokenizers()
        tokenizer.add_special_tokens(
            [tk.AddedToken(t, special=True, normalized=False) for t in to_register]
        )
        return cls(TokenizersBackend(tokenizer, clean_up), specials, extra)

    # -- special tokens

    def _id(self, name: str) -> int | None:
        token = self.special_tokens.get(name)
        return None if token is None else self.backend.token_to_id(token)

    @property
    def pad_token_id(self) -> int | None:
        return self._id("pad_token")

    @property
    def eos_token_id(self) -> int | None:
        return self._id("eos_token")

    @property
    def bos_token_id(self) -> int | None:
        return self._id("bos_token")

    @property
    def unk_token_id(self) -> int | None:
        return self._id("unk_token")

    @property
    def cls_token_id(self) -> int | None:
        return self._id("cls_token")

    @property
    def sep_token_id(self) -> int | None:
        return self._id("sep_token")

    @property
    def mask_token_id(self) -> int | None:
        return self._id("mask_token")

    @property
    def lang_code_to_id(self) -> dict[str, int]:
        """mBART language code -> token id (empty for tokenizers without language codes)."""
        backend = self.backend
        return dict(backend.languages) if isinstance(backend, SentencePieceBackend) else {}

    @property
    def all_special_ids(self) -> list[int]:
        tokens = [*self.special_tokens.values(), *self.additional_special_tokens]
        ids = (self.backend.token_to_id(t) for t in dict.fromkeys(tokens))
        return [i for i in ids if i is not None]

    def __len__(self) -> int:
        return self.backend.vocab_size

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> Any:
        if isinstance(tokens, str):
            return self.backend.token_to_id(tokens)
        return [self.backend.token_to_id(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> Any:
        if isinstance(ids, int):
            return self.backend.id_to_token(ids)
        return [self.backend.id_to_token(int(i)) for i in ids]

    # -- text -> ids

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of one text (with the model's special tokens by default)."""
        return self.backend.encode(text, add_special_tokens)

    def __call__(
        self,
        text: str | list[str] | None = None,
        *,
        text_target: str | list[str] | None = None,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        max_length: int | None = None,
        truncation: bool = False,
        return_tensors: str | None = None,
        return_attention_mask: bool = True,
    ) -> BatchFeature:
        """``input_ids`` and ``attention_mask`` of one text or a batch.

        ``text_target`` encodes target-language texts (mBART's ``tgt_lang`` framing).
        ``padding=True``/``"longest"`` pads to the longest, ``"max_length"`` to ``max_length``;
        ``return_tensors="pt"`` gives int64 tensors (which need equal lengths).
        """
        if (text is None) == (text_target is None):
            raise ConfigError("Give the tokenizer text or text_target (one of them).")
        target = text_target is not None
        texts = text_target if target else text
        single = isinstance(texts, str)
        batch: list[str] = [texts] if isinstance(texts, str) else list(texts or [])
        ids = [self.backend.encode(t, add_special_tokens, target) for t in batch]
        if truncation and max_length is not None:
            ids = [row[:max_length] for row in ids]
        mask = [[1] * len(row) for row in ids]
        if padding and padding != "do_not_pad":
            width = (
                max_length
                if padding == "max_length" and max_length
                else max(map(len, ids), default=0)
            )
            ids, mask = self._pad(ids, mask, width)
        if return_tensors == "pt":
            if len({len(row) for row in ids}) > 1:
                raise ConfigError(
                    "Texts of different lengths cannot form one tensor; pass padding=True."
                )
            out: dict[str, Any] = {"input_ids": torch.tensor(ids, dtype=torch.long)}
            out["attention_mask"] = torch.tensor(mask, dtype=torch.long)
        elif return_tensors is not None:
            raise ConfigError(
                f"return_tensors={return_tensors!r} is not supported; use 'pt' or None."
            )
        else:
            out = {
                "input_ids": ids[0] if single else ids,
                "attention_mask": mask[0] if single else mask,
            }
        if not return_attention_mask:
            out.pop("attention_mask")
        return BatchFeature(out)

    def _pad(
        self, ids: list[list[int]], mask: list[list[int]], width: int
    ) -> tuple[list[list[int]], list[list[int]]]:
        pad = self.pad_token_id
        if pad is None:
            raise ConfigError(
                "This tokenizer has no pad token, so texts cannot be padded; set one "
                "(e.g. tokenizer.special_tokens['pad_token'] = '<|endoftext|>')."
            )
        left = self.padding_side == "left"
        padded, masks = [], []
        for row, row_mask in zip(ids, mask, strict=True):
            fill = width - len(row)
            padded.append([pad] * fill + row if left else row + [pad] * fill)
            masks.append([0] * fill + row_mask if left else row_mask + [0] * fill)
        return padded, masks

    # -- ids -> text

    def decode(self, ids: Any, skip_special_tokens: bool = False) -> str:
        """Text of one id sequence (list or 1-D tensor)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return self.backend.decode([int(i) for i in ids], skip_special_tokens)

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = False) -> list[str]:
        """Texts of a batch of id sequences ((B, T) tensor or lists), e.g. ``generate``'s."""
        if isinstance(sequences, torch.Tensor):
            sequences = sequences.tolist()
        return [self.decode(row, skip_special_tokens) for row in sequences]

    def save_pretrained(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write the tokenizer files (``tokenizer.json``, or the sentencepiece model) and
        ``tokenizer_config.json`` with the special tokens; returns the paths."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {**self.special_tokens}
        config["additional_special_tokens"] = self.additional_special_tokens
        backend = self.backend
        if isinstance(backend, SentencePieceBackend):
            model_path = out / "sentencepiece.bpe.model"
            model_path.write_bytes(backend.model.serialized_model_proto())
            config["tokenizer_class"] = "MBart50Tokenizer" if backend.mbart50 else "MBartTokenizer"
            config["src_lang"], config["tgt_lang"] = backend.src_lang, backend.tgt_lang
        else:
            assert isinstance(backend, TokenizersBackend)
            model_path = out / "tokenizer.json"
            backend.tokenizer.save(str(model_path))
            config["clean_up_tokenization_spaces"] = backend.clean_up_spaces
        config_path = out / "tokenizer_config.json"
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", "utf-8")
        return [model_path, config_path]

    def __repr__(self) -> str:
        return f"TextTokenizer(vocab_size={len(self)}, special_tokens={self.special_tokens})"


def has_text_tokenizer(files: ModelFiles) -> bool:
    """Whether a checkpoint holds one of the text tokenizer layouts."""
    names = ("tokenizer.json", "vocab.txt", "merges.txt", "sentencepiece.bpe.model")
    return any(files.path(name) is not None for name in names)
