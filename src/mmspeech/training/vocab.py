"""Character vocabularies for CTC, built from transcripts in the MMS layout.

``{"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "a": 5, …}``: ``<pad>`` is the CTC blank,
``|`` stands for the space between words, the characters follow in sorted order. A checkpoint
directory holds one such table per language in a nested ``vocab.json``.
"""

from __future__ import annotations

import json
import stat
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from mmspeech.errors import DatasetError
from mmspeech.files import atomic_write_text, default_mode

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
WORD_DELIMITER = "|"
VOCAB_FILE = "vocab.json"


def normalize_text(text: str, lowercase: bool = True) -> str:
    """NFC, optional lower-casing, whitespace runs collapsed to one space."""
    text = unicodedata.normalize("NFC", text)
    if lowercase:
        text = text.lower()
    return " ".join(text.split())


def build_vocab(
    texts: Iterable[str], *, lowercase: bool = True, min_count: int = 1
) -> dict[str, int]:
    """The CTC vocabulary of ``texts``: specials, ``|``, then every character seen ``min_count``+.

    Raises:
        DatasetError: no characters at all, or a transcript uses the delimiter ``|`` itself.
    """
    counts: Counter[str] = Counter()
    for text in texts:
        normalized = normalize_text(text, lowercase)
        if WORD_DELIMITER in normalized:
            raise DatasetError(
                f"The transcript {normalized!r:.60} contains {WORD_DELIMITER!r}, the word "
                "delimiter of CTC vocabularies: remove it from the transcripts."
            )
        counts.update(normalized.replace(" ", ""))
    characters = sorted(ch for ch, n in counts.items() if n >= min_count)
    if not characters:
        raise DatasetError("The transcripts contain no characters to build a vocabulary from.")
    tokens = [*SPECIAL_TOKENS, WORD_DELIMITER, *characters]
    return {token: index for index, token in enumerate(tokens)}


def encode(
    text: str, vocab: Mapping[str, int], *, lowercase: bool = True, allow_empty: bool = False
) -> list[int]:
    """Label ids of ``text`` (spaces become ``|``).

    Args:
        allow_empty: an empty (or all-space) transcript gives ``[]``, a CTC target of blanks
            only (non-speech: noise, silence); else it is an error.

    Raises:
        DatasetError: a character is not in ``vocab`` (the message lists them), or the
            transcript is empty and ``allow_empty`` is False.
    """
    normalized = normalize_text(text, lowercase).replace(" ", WORD_DELIMITER)
    unknown = sorted({ch for ch in normalized if ch not in vocab})
    if unknown:
        raise DatasetError(
            f"The transcript {text!r:.60} has characters outside the vocabulary: "
            f"{''.join(unknown)!r}. Rebuild the vocabulary from all transcripts, or clean them."
        )
    if not normalized and not allow_empty:
        raise DatasetError(
            "An empty transcript cannot be a CTC target. To train on non-speech (noise, "
            "silence) toward blank output, opt in: allow_empty_text=True (--allow-empty-text)."
        )
    return [vocab[ch] for ch in normalized]


def restrict_head(
    weight: torch.Tensor, bias: torch.Tensor, source: Mapping[str, int], target: Mapping[str, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """An output head for ``target`` from one trained over ``source``: shared tokens keep their
    rows, new tokens get small random rows (a warm start for a new language's head)."""
    rows = torch.randn(len(target), weight.shape[1]) * weight.std()
    biases = torch.full((len(target),), float(bias.mean()))
    for token, index in target.items():
        if token in source:
            rows[index] = weight[source[token]]
            biases[index] = bias[source[token]]
    return rows, biases


def read_nested_vocab(directory: str | Path) -> dict[str, dict[str, int]]:
    """The per-language tables of ``directory/vocab.json`` ({} when there is none).

    Raises:
        DatasetError: the file exists but is a flat (single-language) vocabulary.
    """
    path = Path(directory) / VOCAB_FILE
    if not path.is_file():
        return {}
    data: Any = json.loads(path.read_text(encoding="utf-8"))
    if not all(isinstance(table, dict) for table in data.values()):
        raise DatasetError(
            f"{path} is a flat vocabulary (one language); adapters need one nested by language "
            '({"eng": {...}, "fra": {...}}). Start from an MMS-style checkpoint.'
        )
    return data


def write_language_vocab(directory: str | Path, lang: str, vocab: Mapping[str, int]) -> Path:
    """Add (or replace) ``lang``'s table in the nested ``vocab.json`` of ``directory``.

    The file is shared by every language of the checkpoint: it is replaced atomically (a kill
    while writing leaves the old file whole) and keeps its permissions.
    """
    tables = read_nested_vocab(directory)
    tables[lang] = dict(vocab)
    path = Path(directory) / VOCAB_FILE
    text = json.dumps(tables, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write_text(path, text, checkpoint_mode(directory))
    return path


def checkpoint_mode(directory: str | Path) -> int:
    """The permissions of the checkpoint's files (those of ``vocab.json`` or ``config.json``),
    for files written into it; a new file's usual ones when it has neither."""
    for name in (VOCAB_FILE, "config.json"):
        path = Path(directory) / name
        if path.is_file():
            return stat.S_IMODE(path.stat().st_mode)
    return default_mode()
