"""VitsTokenizer: text -> character ids for VITS / MMS-TTS, as the reference tokenises.

Steps, in the reference's order:

1. ``normalize``: lower-case (vocabulary entries found verbatim are kept as they are);
2. Romanian ``ț`` (comma below) -> ``ţ`` (cedilla) when ``language == "ron"``;
3. ``is_uroman`` and non-ASCII text: romanise with the ``uroman`` package (imported on use);
4. ``phonemize``: espeak phonemes through the ``phonemizer`` package (not used by MMS), else
   with ``normalize``: drop characters outside the vocabulary (logged) and strip the ends;
5. split the text at added tokens (``added_tokens_decoder``, ``<unk>``, ``<pad>``; earliest,
   then longest match): each added token is one id; every other piece gets one id per
   character, with the blank id 0 between characters and at both ends of the piece
   (``add_blank``), so no blank is put next to an added token.

``<unk>`` / ``<pad>`` missing from ``vocab.json`` get the ids after the vocabulary, as in the
reference (so with ``normalize=False`` an unknown character gets an id past the model's table).
With ``normalize``, added tokens survive only if all their characters are in the vocabulary.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmspeech.checkpoints import resolve
from mmspeech.checkpoints.options import split_hub
from mmspeech.errors import CheckpointError, ConfigError, EmptyTextError, MissingDependencyError
from mmspeech.processing.batch import BatchFeature

logger = logging.getLogger(__name__)

VOCAB_FILE = "vocab.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
_NON_ASCII = re.compile(r"[^\x00-\x7F]")


@dataclass(frozen=True)
class AddedToken:
    """A token matched as a whole before the text is split into characters."""

    content: str
    lstrip: bool = False  # also swallow the whitespace before it
    rstrip: bool = False  # also swallow the whitespace after it


@functools.lru_cache(maxsize=1)
def load_romanizer(uroman: Any) -> Any:
    """The ``uroman.Uroman`` instance, built once: it takes seconds (it reads its data files)."""
    logger.info("Loading the uroman romaniser")
    return uroman.Uroman()


class VitsTokenizer:
    """Character tokenizer of VITS checkpoints (``vocab.json`` + ``tokenizer_config.json``).

    ``tokenizer(text, return_tensors="pt")`` gives ``input_ids`` and ``attention_mask`` for
    :class:`~mmspeech.VitsModel`.
    """

    def __init__(
        self,
        vocab: str | os.PathLike[str] | Mapping[str, int],
        *,
        pad_token: str = "<pad>",
        unk_token: str = "<unk>",
        language: str | None = None,
        add_blank: bool = True,  # put the blank id 0 between characters
        normalize: bool = True,  # lower-case and drop characters outside the vocabulary
        phonemize: bool = True,  # espeak phonemes first (the reference's default; MMS: False)
        is_uroman: bool = False,  # romanise non-Latin text with uroman first
        # id -> added token (its text, or a dict with "content", "lstrip", "rstrip")
        added_tokens: Mapping[int, str | Mapping[str, Any]] | None = None,
    ):
        if isinstance(vocab, Mapping):
            self.vocab = {str(k): int(v) for k, v in vocab.items()}
        else:
            try:
                with open(vocab, encoding="utf-8") as handle:
                    self.vocab = {str(k): int(v) for k, v in json.load(handle).items()}
            except (OSError, ValueError, TypeError, AttributeError, RecursionError) as exc:
                raise CheckpointError(
                    f"Cannot read the TTS vocabulary {vocab} (a JSON object of characters to "
                    f"ids): {type(exc).__name__}"
                ) from exc
        self.pad_token, self.unk_token = pad_token, unk_token
        self.language = language
        self.add_blank, self.normalize = add_blank, normalize
        self.phonemize, self.is_uroman = phonemize, is_uroman
        self.added_tokens: dict[str, int] = {}  # added tokens that are not vocabulary entries
        self.splitting_tokens: dict[str, AddedToken] = {}  # every added token, matched whole
        for index, token in sorted((added_tokens or {}).items()):
            added = _added_token(token)
            self.splitting_tokens[added.content] = added
            if added.content not in self.vocab:
                self.added_tokens[added.content] = int(index)
        for special in (unk_token, pad_token):  # the reference's order: unk first
            self.splitting_tokens.setdefault(special, AddedToken(special))
            if special not in self.vocab and special not in self.added_tokens:
                used = [*self.vocab.values(), *self.added_tokens.values()]
                self.added_tokens[special] = max(used, default=-1) + 1
        self.blank_id = 0

    # -- vocabulary

    def get_vocab(self) -> dict[str, int]:
        return {**self.vocab, **self.added_tokens}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __len__(self) -> int:
        return len(self.get_vocab())

    @property
    def pad_token_id(self) -> int:
        return self.get_vocab()[self.pad_token]

    @property
    def unk_token_id(self) -> int:
        return self.get_vocab()[self.unk_token]

    def __repr__(self) -> str:
        return (
            f"VitsTokenizer(vocab_size={self.vocab_size}, language={self.language!r}, "
            f"add_blank={self.add_blank}, normalize={self.normalize}, "
            f"phonemize={self.phonemize}, is_uroman={self.is_uroman})"
        )

    # -- text -> characters

    def _lower(self, text: str) -> str:
        """Lower-case ``text``, keeping any vocabulary entry found verbatim as it is."""
        entries = list(self.get_vocab())
        out, i = [], 0
        while i < len(text):
            match = next((entry for entry in entries if text.startswith(entry, i)), None)
            if match:
                out.append(match)
                i += len(match)
            else:
                out.append(text[i].lower())
                i += 1
        return "".join(out)

    def romanize(self, text: str) -> str:
        """Romanise with uroman (``pip install uroman``), loaded once per process."""
        try:
            import uroman
        except ImportError as exc:
            raise MissingDependencyError(
                "This checkpoint's tokenizer romanises non-Latin text (is_uroman=true), which "
                "needs the 'uroman' package: pip install uroman. Or romanise the text "
                "yourself and pass romanize=False."
            ) from exc
        return str(load_romanizer(uroman).romanize_string(text))

    def _phonemes(self, text: str) -> str:
        try:
            import phonemizer
        except ImportError as exc:
            raise MissingDependencyError(
                "This checkpoint's tokenizer converts text to phonemes (phonemize=true), which "
                "needs the 'phonemizer' package and the espeak-ng program: "
                "pip install phonemizer, and install espeak-ng. (MMS-TTS checkpoints do not "
                "phonemize; check tokenizer_config.json.)"
            ) from exc
        phonemes = phonemizer.phonemize(
            text,
            language="en-us",
            backend="espeak",
            strip=True,
            preserve_punctuation=True,
            with_stress=True,
        )
        return re.sub(r"\s+", " ", str(phonemes))

    def prepare_text(
        self, text: str, *, normalize: bool | None = None, romanize: bool | None = None
    ) -> str:
        """The character string that gets one id per character (steps 1-4 of the module doc).

        Args:
            normalize: override the tokenizer's ``normalize``.
            romanize: override ``is_uroman`` (False: the text is already romanised).
        """
        normalize = self.normalize if normalize is None else normalize
        romanize = self.is_uroman if romanize is None else romanize
        if normalize:
            text = self._lower(text)
        if self.language == "ron":
            text = text.replace("ț", "ţ")
        if romanize and _NON_ASCII.search(text):
            text = self.romanize(text)
        if self.phonemize:
            return self._phonemes(text)
        if normalize:
            kept = "".join(char for char in text if char in self.vocab)
            dropped = sorted({char for char in text if char not in self.vocab})
            if dropped:
                logger.warning(
                    "Dropped characters outside the vocabulary: %s",
                    " ".join(repr(c) for c in dropped),
                )
            text = kept.strip()
        else:
            plain = "".join(piece for piece, added in self.split_added_tokens(text) if not added)
            unknown = sorted({char for char in plain if char not in self.vocab})
            if unknown:
                logger.warning(
                    "Characters outside the vocabulary become %s (id %d, past the model's "
                    "table): %s. Use normalize=True to drop them.",
                    self.unk_token,
                    self.unk_token_id,
                    " ".join(repr(c) for c in unknown),
                )
        return text

    def split_added_tokens(self, text: str) -> list[tuple[str, bool]]:
        """Cut ``text`` at added tokens: ``(piece, is_added_token)`` pairs, no empty pieces.

        At each position the longest added token starting there wins; ``lstrip`` / ``rstrip``
        tokens take the whitespace next to them along.
        """
        pieces: list[tuple[str, bool]] = []
        start = i = 0
        while i < len(text):
            match = max(
                (t for t in self.splitting_tokens if text.startswith(t, i)), key=len, default=""
            )
            if not match:
                i += 1
                continue
            token = self.splitting_tokens[match]
            before = text[start:i]
            pieces.append((before.rstrip() if token.lstrip else before, False))
            pieces.append((match, True))
            i += len(match)
            if token.rstrip:
                while i < len(text) and text[i].isspace():
                    i += 1
            start = i
        pieces.append((text[start:], False))
        return [(piece, added) for piece, added in pieces if piece]

    def tokenize(self, text: str, **kwargs: Any) -> list[str]:
        """Tokens of one text: characters interleaved with the blank token, and added tokens."""
        blank = next((t for t, i in self.get_vocab().items() if i == self.blank_id), "")
        tokens: list[str] = []
        for piece, added in self.split_added_tokens(self.prepare_text(text, **kwargs)):
            if added or not self.add_blank:
                tokens += [piece] if added else list(piece)
            else:
                interleaved = [blank] * (2 * len(piece) + 1)
                interleaved[1::2] = list(piece)
                tokens += interleaved
        return tokens

    def encode(
        self, text: str, *, normalize: bool | None = None, romanize: bool | None = None
    ) -> list[int]:
        """Token ids of one text; raises :class:`EmptyTextError` if nothing is left."""
        characters = self.prepare_text(text, normalize=normalize, romanize=romanize)
        if not characters:
            raise EmptyTextError(
                f"Nothing to synthesise in {text!r}: no character of it is in this voice's "
                f"vocabulary ({''.join(sorted(self.vocab))!r}) once normalised."
            )
        vocab, unk = self.get_vocab(), self.unk_token_id
        out: list[int] = []
        for piece, added in self.split_added_tokens(characters):
            ids = [vocab[piece]] if added else [vocab.get(char, unk) for char in piece]
            if added or not self.add_blank:
                out += ids
            else:
                interleaved = [self.blank_id] * (2 * len(ids) + 1)
                interleaved[1::2] = ids
                out += interleaved
        return out

    def __call__(
        self,
        text: str | Sequence[str],
        *,
        padding: bool | str = False,  # True / "longest": pad a batch to its longest text
        return_tensors: str | None = None,  # None (lists), "pt" or "np"
        normalize: bool | None = None,
        romanize: bool | None = None,
    ) -> BatchFeature:
        """Encode a text or a batch into ``input_ids`` and ``attention_mask``."""
        texts = [text] if isinstance(text, str) else list(text)
        rows = [self.encode(t, normalize=normalize, romanize=romanize) for t in texts]
        masks = [[1] * len(row) for row in rows]
        if padding not in (False, "do_not_pad"):
            if padding not in (True, "longest"):
                raise ConfigError(f"padding={padding!r}: expected a bool or 'longest'.")
            longest = max(len(row) for row in rows)
            for row, mask in zip(rows, masks, strict=True):
                mask.extend([0] * (longest - len(row)))
                row.extend([self.pad_token_id] * (longest - len(row)))
        if return_tensors is None:
            if isinstance(text, str):
                return BatchFeature(input_ids=rows[0], attention_mask=masks[0])
            return BatchFeature(input_ids=rows, attention_mask=masks)
        if len({len(row) for row in rows}) > 1:
            raise ConfigError("The texts encode to different lengths: pass padding=True.")
        if return_tensors == "pt":
            import torch

            return BatchFeature(
                input_ids=torch.tensor(rows, dtype=torch.long),
                attention_mask=torch.tensor(masks, dtype=torch.long),
            )
        if return_tensors == "np":
            import numpy as np

            return BatchFeature(
                input_ids=np.asarray(rows, dtype=np.int64),
                attention_mask=np.asarray(masks, dtype=np.int64),
            )
        raise ConfigError(f"return_tensors={return_tensors!r}: expected None, 'pt' or 'np'.")

    def decode(self, ids: Sequence[int]) -> str:
        """Characters of ``ids`` (blanks removed when ``add_blank``)."""
        names = {i: t for t, i in self.get_vocab().items()}
        ids = list(ids)
        if self.add_blank and len(ids) > 1:
            ids = ids[1::2]
        return "".join(names.get(int(i), "") for i in ids)

    # -- files

    @classmethod
    def from_pretrained(
        cls,
        ref: str | os.PathLike[str],
        **kwargs: Any,
    ) -> VitsTokenizer:
        """Load from a checkpoint directory or hub id.

        ``kwargs``: hub settings (``revision``, ``cache_dir``, ``token``, ``local_files_only``)
        and settings that replace ``tokenizer_config.json``'s (e.g. ``normalize=False``).
        """
        hub, overrides = split_hub(kwargs)
        files = resolve(ref, **hub)
        vocab = files.require(VOCAB_FILE, "the VITS character vocabulary")
        settings = {**(files.read_json(TOKENIZER_CONFIG) or {}), **overrides}
        init: dict[str, Any] = {}
        for name in ("language", "add_blank", "normalize", "phonemize", "is_uroman"):
            if name in settings:
                init[name] = settings[name]
        for name in ("pad_token", "unk_token"):
            value = settings.get(name)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                init[name] = value
        added: dict[int, str | Mapping[str, Any]] = {}
        legacy = files.read_json("added_tokens.json") or {}  # older repositories: {token: id}
        added.update({int(i): str(t) for t, i in legacy.items()})
        for i, t in (settings.get("added_tokens_decoder") or {}).items():
            added[int(i)] = t if isinstance(t, Mapping) else str(t)
        init["added_tokens"] = added
        return cls(vocab, **init)

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> list[Path]:
        """Write ``vocab.json`` and ``tokenizer_config.json`` in the reference's layout."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "add_blank": self.add_blank,
            "is_uroman": self.is_uroman,
            "language": self.language,
            "normalize": self.normalize,
            "phonemize": self.phonemize,
            "pad_token": self.pad_token,
            "unk_token": self.unk_token,
            "added_tokens_decoder": {
                str(self.get_vocab()[t.content]): {
                    "content": t.content,
                    "lstrip": t.lstrip,
                    "normalized": False,
                    "rstrip": t.rstrip,
                    "single_word": False,
                    "special": True,
                }
                for t in self.splitting_tokens.values()
            },
            "tokenizer_class": "VitsTokenizer",
        }
        written = []
        for name, data in ((VOCAB_FILE, self.vocab), (TOKENIZER_CONFIG, config)):
            path = directory / name
            path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
            written.append(path)
        return written


def _added_token(token: str | Mapping[str, Any]) -> AddedToken:
    """An ``added_tokens_decoder`` entry (a string or the reference's dict) as an AddedToken."""
    if isinstance(token, Mapping):
        return AddedToken(
            str(token["content"]), bool(token.get("lstrip")), bool(token.get("rstrip"))
        )
    return AddedToken(str(token))
