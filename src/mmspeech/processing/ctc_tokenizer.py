"""The character tokenizer of wav2vec2 / MMS CTC models: text → label ids, CTC ids → text.

Same files, ids, text and offsets as transformers' ``Wav2Vec2CTCTokenizer``. ``vocab.json`` is
flat (``{"<pad>": 0, "<s>": 1, ...}``) or nested by language (``{"eng": {...}, ...}``, as in
mms-1b-all); a nested one needs a target language. The special tokens and the vocabulary entries
longer than one character are "added tokens": matched whole in text (multi-character ones swallow
the whitespace around them) before the rest is split into characters.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, overload

from mmspeech.checkpoints import resolve
from mmspeech.checkpoints.options import split_hub
from mmspeech.ctc.decode import runs, split_words
from mmspeech.errors import CheckpointError, ConfigError, LanguageError
from mmspeech.processing.batch import BatchFeature

logger = logging.getLogger(__name__)

VOCAB_FILE = "vocab.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"  # older layout; read if the config lacks tokens
ADDED_TOKENS = "added_tokens.json"  # older layout: added tokens whose ids are past the vocabulary
NO_MAX_LENGTH = int(1e30)  # the reference's model_max_length meaning "no limit"
_SPECIALS = ("bos_token", "eos_token", "unk_token", "pad_token", "word_delimiter_token")
_SETTINGS = ("target_lang", "replace_word_delimiter_char", "do_lower_case",
             "clean_up_tokenization_spaces", "model_max_length")  # fmt: skip
_CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
             (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))  # fmt: skip
Offsets = list[dict[str, Any]]  # [{"char" | "word": str, "start_offset": int, "end_offset": int}]


@dataclass(frozen=True)
class AddedToken:
    """A token matched whole in text before character splitting (fields as in the files)."""

    content: str
    single_word: bool = False  # saved back as read; never set by this tokenizer
    lstrip: bool = False  # swallow the whitespace on its left
    rstrip: bool = False  # swallow the whitespace on its right
    normalized: bool = True  # saved back as read; this tokenizer never normalises
    special: bool = False

    @classmethod
    def from_json(cls, data: str | Mapping[str, Any] | AddedToken) -> AddedToken:
        if not isinstance(data, Mapping):
            return data if isinstance(data, AddedToken) else cls(data)
        fields = {k: v for k, v in data.items() if k != "__type"}
        fields.setdefault("normalized", not fields.get("special", False))
        return cls(**fields)


@dataclass
class CTCDecoding:
    """Decoded text with frame offsets (``None`` unless asked for); lists of them for a batch."""

    text: str | list[str]
    char_offsets: Offsets | list[Offsets] | None = None
    word_offsets: Offsets | list[Offsets] | None = None

    def __getitem__(self, key: str) -> Any:  # outputs["word_offsets"] works as in the reference
        return getattr(self, key)


BatchEncoding = BatchFeature  # the name transformers gives a tokenizer's output


class Wav2Vec2CTCTokenizer:
    """CTC character vocabulary: ``__call__``/``encode`` make labels, ``decode`` reads CTC ids.

    Attributes:
        vocab: the whole ``vocab.json``; for a nested file its keys are the language codes.
        encoder, decoder: token → id and id → token of the current language.
        target_lang: the current language (None for a flat vocabulary).
    """

    model_input_names = ("input_ids", "attention_mask")

    def __init__(
        self,
        vocab: str | os.PathLike[str] | Mapping[str, Any],  # vocab.json or its content
        *,
        target_lang: str | None = None,
        bos_token: str | None = "<s>",
        eos_token: str | None = "</s>",
        unk_token: str | None = "<unk>",
        pad_token: str | None = "<pad>",  # also the CTC blank
        word_delimiter_token: str | None = "|",  # stands for the space between words
        replace_word_delimiter_char: str = " ",  # what the delimiter becomes when decoding
        do_lower_case: bool = False,  # upper-case the text to encode, lower-case decoded text
        clean_up_tokenization_spaces: bool = False,  # " ." → "." etc. after decoding
        extra_special_tokens: Sequence[str] = (),
        added_tokens_decoder: Mapping[int, AddedToken] | None = None,  # id → token, from files
        model_max_length: int = NO_MAX_LENGTH,  # only used by padding="max_length"
    ) -> None:
        self.vocab: dict[str, Any] = _load_vocab(vocab)
        self.bos_token, self.eos_token, self.unk_token = bos_token, eos_token, unk_token
        self.pad_token, self.word_delimiter_token = pad_token, word_delimiter_token
        self.extra_special_tokens = list(extra_special_tokens)
        self.replace_word_delimiter_char = replace_word_delimiter_char
        self.do_lower_case = do_lower_case
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.model_max_length = model_max_length
        self.target_lang = target_lang
        self.encoder: dict[str, int] = self._language_vocab(target_lang)
        self.decoder = {index: token for token, index in self.encoder.items()}
        self._added: dict[int, AddedToken] = dict(added_tokens_decoder or {})
        self._added_ids = {token.content: index for index, token in self._added.items()}
        # Every added token ever registered keeps splitting text, even once set_target_lang has
        # dropped it (the reference's trie only grows).
        self._split_tokens: set[str] = set()
        self._split_pattern: re.Pattern[str] | None = None
        specials = [t for t in self.all_special_tokens if t not in self._added_ids]
        self._add([AddedToken(t, normalized=False, special=True) for t in specials])
        self._add_multi_character_tokens()

    # -- languages -----------------------------------------------------------------------------

    @property
    def languages(self) -> list[str]:
        """The language codes of a nested vocabulary, sorted; empty for a flat one."""
        return sorted(self.vocab) if _is_nested(self.vocab) else []

    def set_target_lang(self, target_lang: str) -> None:
        """Switch to another language of a nested vocabulary (e.g. ``"fra"``)."""
        if not _is_nested(self.vocab):
            raise LanguageError(
                f"Cannot switch to {target_lang!r}: this vocabulary is not nested by language."
            )
        self.encoder = self._language_vocab(target_lang)
        self.target_lang = target_lang
        self.decoder = {index: token for token, index in self.encoder.items()}
        # Vocabulary tokens take precedence over added tokens holding the same ids.
        for index in [i for i in self._added if i in self.decoder]:
            self._added_ids.pop(self._added.pop(index).content, None)
        self._add_multi_character_tokens()
        logger.info("CTC tokenizer switched to %r (%d tokens)", target_lang, len(self))

    def _language_vocab(self, target_lang: str | None) -> dict[str, int]:
        languages = self.languages
        if target_lang is None and languages:
            examples = ", ".join(dict.fromkeys(["eng"] * ("eng" in languages) + languages[:4]))
            raise LanguageError(
                f"This vocabulary has one part per language ({len(languages)} languages, e.g. "
                f"{examples}): pass target_lang='eng' (or another code) to from_pretrained, "
                "or call tokenizer.set_target_lang('eng')."
            )
        if target_lang is None:
            return self.vocab
        if not languages:
            raise LanguageError(
                f"target_lang={target_lang!r} was given, but this vocabulary is not nested by "
                "language: leave target_lang unset for this checkpoint."
            )
        if target_lang not in self.vocab:
            close = _closest_languages(target_lang, languages)
            hint = f" Closest supported codes: {', '.join(close)}." if close else ""
            raise LanguageError(
                f"Language {target_lang!r} is not in this vocabulary ({len(languages)} "
                f"languages).{hint} The supported codes are the keys of tokenizer.vocab."
            )
        table = self.vocab[target_lang]
        if not all(isinstance(index, int) for index in table.values()):
            raise CheckpointError(f"The vocabulary of {target_lang!r} should map tokens to ids.")
        return dict(table)

    # -- vocabulary and added tokens -----------------------------------------------------------

    def _add(self, tokens: Sequence[AddedToken]) -> None:
        """Register added tokens: a known token keeps its id, a new one gets the next free id."""
        vocab = self.get_vocab()
        next_id = len(vocab)
        for token in tokens:
            if not token.content:
                continue
            index = vocab.get(token.content)
            if index is None:
                index = vocab[token.content] = next_id
                next_id += 1
            self._added[index] = token
            self._added_ids[token.content] = index
        new = {token.content for token in self._added.values()} - self._split_tokens
        if new:
            self._split_tokens |= new
            by_length = sorted(self._split_tokens, key=len, reverse=True)  # longest match wins
            self._split_pattern = re.compile("(" + "|".join(map(re.escape, by_length)) + ")")

    def _add_multi_character_tokens(self) -> None:
        for token in self.encoder:  # one at a time, as the reference does
            if len(token) > 1:
                self._add([AddedToken(token, lstrip=True, rstrip=True, normalized=False)])

    def get_vocab(self) -> dict[str, int]:
        """Token → id: the current language's vocabulary, then the added tokens."""
        vocab = dict(self.encoder)
        vocab.update({token.content: i for i, token in sorted(self._added.items())})
        return vocab

    @property
    def added_tokens_decoder(self) -> dict[int, AddedToken]:
        return dict(sorted(self._added.items()))

    @property
    def vocab_size(self) -> int:
        """Distinct ids of the current language's vocabulary (the CTC head's output size)."""
        return len(self.decoder)

    def __len__(self) -> int:
        return len(self.get_vocab())

    def __repr__(self) -> str:
        lang = f", target_lang={self.target_lang!r}" if self.target_lang else ""
        return f"{type(self).__name__}(vocab_size={self.vocab_size}{lang})"

    # -- special tokens ------------------------------------------------------------------------

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """The named special tokens that are set (the word delimiter counts as one)."""
        tokens = {name: getattr(self, name) for name in _SPECIALS}
        return {name: token for name, token in tokens.items() if token is not None}

    @property
    def all_special_tokens(self) -> list[str]:
        return list(dict.fromkeys([*self.special_tokens_map.values(), *self.extra_special_tokens]))

    @property
    def all_special_ids(self) -> list[int | None]:
        return self.convert_tokens_to_ids(self.all_special_tokens)

    @property
    def bos_token_id(self) -> int | None:
        return self._id_of(self.bos_token)

    @property
    def eos_token_id(self) -> int | None:
        return self._id_of(self.eos_token)

    @property
    def unk_token_id(self) -> int | None:
        return self._id_of(self.unk_token)

    @property
    def pad_token_id(self) -> int | None:
        return self._id_of(self.pad_token)

    @property
    def word_delimiter_token_id(self) -> int | None:
        return self._id_of(self.word_delimiter_token)

    def _id_of(self, token: str | None) -> int | None:
        return None if token is None else self.convert_tokens_to_ids(token)

    # -- ids <-> tokens ------------------------------------------------------------------------

    @overload
    def convert_tokens_to_ids(self, tokens: str) -> int | None: ...
    @overload
    def convert_tokens_to_ids(self, tokens: list[str] | tuple[str, ...]) -> list[int | None]: ...
    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int | None] | None:
        """Added tokens first, then the vocabulary, else the unknown token's id (None if absent)."""
        if isinstance(tokens, str):
            return self._token_to_id(tokens)
        return [self._token_to_id(token) for token in tokens]

    def _token_to_id(self, token: str) -> int | None:
        if token in self._added_ids:
            return self._added_ids[token]
        unknown = None if self.unk_token is None else self.encoder.get(self.unk_token)
        return self.encoder.get(token, unknown)

    @overload
    def convert_ids_to_tokens(self, ids: int, skip_special_tokens: bool = ...) -> str: ...
    @overload
    def convert_ids_to_tokens(
        self, ids: Iterable[Any], skip_special_tokens: bool = ...
    ) -> list[str]: ...
    def convert_ids_to_tokens(self, ids: Any, skip_special_tokens: bool = False) -> str | list[str]:
        """The vocabulary first, then added tokens, else the unknown token."""
        ids = _to_python(ids)
        if isinstance(ids, int):
            return self._id_to_token(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._id_to_token(int(i)) for i in ids if int(i) not in skip]

    def _id_to_token(self, index: int) -> str:
        if index in self.decoder:
            return self.decoder[index]
        return self._added[index].content if index in self._added else self.unk_token or ""

    # -- encoding ------------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[str]:
        """Added tokens whole, the rest character by character, spaces → the word delimiter.

        With ``do_lower_case`` the characters (not the added tokens) are upper-cased. Unknown
        characters are kept here; ``encode`` maps them to the unknown token.
        """
        pieces = [text]
        if self._split_pattern is not None:
            pieces = [piece for piece in self._split_pattern.split(text) if piece]
        for i, piece in enumerate(pieces):
            token = self._added.get(self._added_ids.get(piece, -1))
            if token is not None and token.rstrip and i + 1 < len(pieces):
                pieces[i + 1] = pieces[i + 1].lstrip()
            if token is not None and token.lstrip and i > 0:
                pieces[i - 1] = pieces[i - 1].rstrip()
        specials = set(self.all_special_tokens)
        tokens: list[str] = []
        for piece in filter(None, pieces):
            if piece in self._added_ids or piece in specials:
                tokens.append(piece)
                continue
            piece = piece.upper() if self.do_lower_case else piece
            delimiter = self.word_delimiter_token
            tokens.extend(piece.replace(" ", delimiter) if delimiter is not None else piece)
        return tokens

    def encode(self, text: str) -> list[int]:
        """The label ids of ``text`` (no special tokens are added)."""
        tokens = self.tokenize(text)
        ids = []
        for token, index in zip(tokens, self.convert_tokens_to_ids(tokens), strict=True):
            if index is None:
                lang = f" of {self.target_lang!r}" if self.target_lang else ""
                raise ConfigError(
                    f"Cannot encode {token!r}: it is not in the vocabulary{lang}, which has no "
                    f"unknown token {self.unk_token!r} to stand for it."
                )
            ids.append(index)
        return ids

    def __call__(
        self,
        text: str | Sequence[str],
        *,
        padding: bool | str = False,  # True/"longest", "max_length" or False/"do_not_pad"
        truncation: bool | None = None,  # cut to max_length; the default when only it is given
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        padding_side: str = "right",
        return_tensors: str | None = None,  # None (lists), "pt" or "np"
        return_attention_mask: bool = True,
    ) -> BatchEncoding:
        """Encode a text or a batch of texts into ``input_ids`` (CTC labels) and a mask."""
        texts = [text] if isinstance(text, str) else list(text)
        rows = [self.encode(t) for t in texts]
        strategy = "longest" if padding is True else "do_not_pad" if padding is False else padding
        if strategy not in ("longest", "max_length", "do_not_pad"):
            raise ConfigError(f"padding={padding!r}: expected a bool, 'longest' or 'max_length'.")
        if truncation is None:
            truncation = max_length is not None and strategy == "do_not_pad"
        if truncation and max_length is not None:
            rows = [row[:max_length] for row in rows]
        target = max((len(row) for row in rows), default=0) if strategy == "longest" else None
        if strategy == "max_length":
            limit = self.model_max_length if self.model_max_length < int(1e20) else None
            target = max_length if max_length is not None else limit
        if target is not None and pad_to_multiple_of:
            target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
        masks = [[1] * len(row) for row in rows]
        if target is not None and any(len(row) < target for row in rows):
            if self.pad_token_id is None:
                raise ConfigError("Cannot pad: the vocabulary has no padding token.")
            for row, mask in zip(rows, masks, strict=True):
                fill, where = max(target - len(row), 0), 0 if padding_side == "left" else len(row)
                row[where:where] = [self.pad_token_id] * fill
                mask[where:where] = [0] * fill
        out = BatchEncoding(input_ids=rows, attention_mask=masks)
        if not return_attention_mask:
            del out["attention_mask"]
        if return_tensors is not None:
            return BatchEncoding({k: _as_tensor(v, return_tensors) for k, v in out.items()})
        return (
            out if not isinstance(text, str) else BatchEncoding({k: v[0] for k, v in out.items()})
        )

    # -- decoding ------------------------------------------------------------------------------

    def decode(
        self,
        token_ids: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        output_char_offsets: bool = False,
        output_word_offsets: bool = False,
        group_tokens: bool = True,
        spaces_between_special_tokens: bool = False,
    ) -> Any:
        """CTC-decode ``(frames,)`` ids: merge repeats, drop blanks (pad), delimiter → space.

        ``token_ids`` is a list, array or tensor; a 2-D one is decoded row by row. A bare int
        decodes as the characters of its token (as in the reference: ``decode(pad_id) == "<pad>"``).
        ``skip_special_tokens`` drops the special tokens, blank included, *before* merging repeats,
        so offsets then count the remaining frames. Returns the text, or a :class:`CTCDecoding`
        when offsets are asked for.
        """
        ids = _to_python(token_ids)
        if isinstance(ids, list) and ids and isinstance(ids[0], list):
            return self.batch_decode(ids, skip_special_tokens, clean_up_tokenization_spaces,
                                     output_char_offsets, output_word_offsets, group_tokens,
                                     spaces_between_special_tokens)  # fmt: skip
        tokens = list(self.convert_ids_to_tokens(ids))
        if skip_special_tokens:
            specials = set(self.all_special_tokens) - {self.word_delimiter_token}
            tokens = [token for token in tokens if token not in specials]
        chars = self._collapse(tokens, group_tokens)
        text = (" " if spaces_between_special_tokens else "").join(c["char"] for c in chars)
        text = text.strip().lower() if self.do_lower_case else text.strip()
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        for before, after in _CLEAN_UP if clean_up_tokenization_spaces else ():
            text = text.replace(before, after)
        if not (output_char_offsets or output_word_offsets):
            return text
        if not tokens:  # the reference returns both (empty) lists here, asked for or not
            return CTCDecoding(text, [], [])
        words = _word_offsets(chars, self.replace_word_delimiter_char)
        return CTCDecoding(text, chars if output_char_offsets else None,
                           words if output_word_offsets else None)  # fmt: skip

    def batch_decode(
        self,
        sequences: Any,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        output_char_offsets: bool = False,
        output_word_offsets: bool = False,
        group_tokens: bool = True,
        spaces_between_special_tokens: bool = False,
    ) -> Any:
        """Decode each row of ``(batch, frames)`` ids; with offsets, one CTCDecoding of lists."""
        decoded = [
            self.decode(row, skip_special_tokens, clean_up_tokenization_spaces,
                        output_char_offsets, output_word_offsets, group_tokens,
                        spaces_between_special_tokens)
            for row in _to_python(sequences)
        ]  # fmt: skip
        if not (output_char_offsets or output_word_offsets):
            return decoded
        return CTCDecoding(
            [d.text for d in decoded],
            [d.char_offsets for d in decoded] if output_char_offsets else None,
            [d.word_offsets for d in decoded] if output_word_offsets else None,
        )

    def _collapse(self, tokens: list[str], group_tokens: bool) -> Offsets:
        """Merge runs of a token, drop blanks, map the delimiter; keep each char's frame span."""
        spans = runs(tokens) if group_tokens else [(t, i, i + 1) for i, t in enumerate(tokens)]
        chars = []
        for token, start, end in spans:
            if token == self.pad_token:
                continue
            char = self.replace_word_delimiter_char if token == self.word_delimiter_token else token
            chars.append({"char": char, "start_offset": start, "end_offset": end})
        return chars

    # -- files ---------------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, vocab: str | os.PathLike[str] | Mapping[str, Any], config: Mapping[str, Any]
    ) -> Wav2Vec2CTCTokenizer:
        """Build from a vocabulary and the settings of a ``tokenizer_config.json``."""
        kwargs: dict[str, Any] = {k: config[k] for k in _SETTINGS if k in config}
        for name in _SPECIALS:
            if name in config:
                value = config[name]
                kwargs[name] = None if value is None else AddedToken.from_json(value).content
        extra = config.get("extra_special_tokens") or config.get("additional_special_tokens")
        if isinstance(extra, list):
            kwargs["extra_special_tokens"] = [AddedToken.from_json(t).content for t in extra]
        added = config.get("added_tokens_decoder") or {}
        kwargs["added_tokens_decoder"] = {int(i): AddedToken.from_json(t) for i, t in added.items()}
        return cls(vocab, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        ref: str | os.PathLike[str],
        target_lang: str | None = None,
        **kwargs: Any,
    ) -> Wav2Vec2CTCTokenizer:
        """Load from a checkpoint directory or hub id (vocab.json + tokenizer_config.json).

        ``kwargs``: hub settings (``revision``, ``cache_dir``, ``token``, ``local_files_only``)
        and settings that replace ``tokenizer_config.json``'s (e.g. ``do_lower_case``).
        """
        hub, overrides = split_hub(kwargs)
        files = resolve(ref, **hub)
        vocab = files.require(VOCAB_FILE, "the CTC vocabulary")
        if target_lang is not None:
            overrides["target_lang"] = target_lang
        settings = {**(files.read_json(TOKENIZER_CONFIG) or {}), **overrides}
        if "added_tokens_decoder" not in settings:  # older layout: the tokens in two more files
            for key, value in (files.read_json(SPECIAL_TOKENS_MAP) or {}).items():
                settings[key] = overrides.get(key) or value
            specials = {AddedToken.from_json(settings[k]).content for k in _SPECIALS[:4]
                        if settings.get(k)}  # fmt: skip
            settings["added_tokens_decoder"] = {
                index: AddedToken(content, normalized=content not in specials,
                                  special=content in specials)
                for content, index in (files.read_json(ADDED_TOKENS) or {}).items()
            }  # fmt: skip
        return cls.from_config(vocab, settings)

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> list[Path]:
        """Write vocab.json, tokenizer_config.json, special_tokens_map.json (for older readers)
        and, if some added token lies past the vocabulary, added_tokens.json."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {name: getattr(self, name) for name in (*_SETTINGS, *_SPECIALS)}
        config["added_tokens_decoder"] = {str(i): asdict(t) for i, t in self._added.items()}
        config["tokenizer_class"] = "Wav2Vec2CTCTokenizer"
        special_map: dict[str, Any] = dict(self.special_tokens_map)
        if self.extra_special_tokens:
            config["extra_special_tokens"] = list(self.extra_special_tokens)
            special_map["additional_special_tokens"] = list(self.extra_special_tokens)
        files: dict[str, Any] = {VOCAB_FILE: self.vocab, TOKENIZER_CONFIG: config,
                                 SPECIAL_TOKENS_MAP: special_map}  # fmt: skip
        added = {t.content: i for i, t in self._added.items() if i >= self.vocab_size}
        if added:
            files[ADDED_TOKENS] = added
        written = []
        for name, data in files.items():
            text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
            (directory / name).write_text(text, encoding="utf-8")
            written.append(directory / name)
        logger.info("Saved the CTC tokenizer to %s", directory)
        return written


def _load_vocab(vocab: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(vocab, Mapping):
        data: Any = dict(vocab)
    else:
        try:
            with open(vocab, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or UTF-8
            reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
            raise CheckpointError(f"Cannot read the CTC vocabulary {vocab}: {reason}") from exc
    flat = isinstance(data, dict) and all(isinstance(v, int) for v in data.values())
    if not (flat or _is_nested(data)):
        raise CheckpointError(
            'A CTC vocabulary maps tokens to ids ({"<pad>": 0, ...}) or languages to such maps '
            f'({{"eng": {{...}}, ...}}); {vocab if isinstance(vocab, str) else "this one"} is not.'
        )
    result: dict[str, Any] = data
    return result


def _is_nested(vocab: Any) -> bool:
    return (
        isinstance(vocab, dict) and bool(vocab) and all(isinstance(v, dict) for v in vocab.values())
    )


def _closest_languages(code: str, languages: Sequence[str], limit: int = 6) -> list[str]:
    """The code in another case, codes extending it ("fr" → "fra"), then similar spellings."""
    folded = {language.casefold(): language for language in languages}
    key = code.casefold()
    found = [folded[key]] if key in folded else []
    found += [lang for low, lang in folded.items() if low.startswith(key) or key.startswith(low)]
    found += [folded[low] for low in difflib.get_close_matches(key, folded, n=limit, cutoff=0.6)]
    return list(dict.fromkeys(found))[:limit]


def _word_offsets(chars: Offsets, delimiter: str) -> Offsets:
    """Words are the runs of characters between delimiters, from their first to last frame."""
    return [{"word": "".join(c["char"] for c in group),
             "start_offset": group[0]["start_offset"],
             "end_offset": group[-1]["end_offset"]}
            for group in split_words(chars, lambda c: c["char"] == delimiter)]  # fmt: skip


def _to_python(ids: Any) -> Any:
    """Tensors, arrays and numpy scalars → (nested) lists of Python ints."""
    if hasattr(ids, "tolist"):
        return ids.tolist()
    return [_to_python(i) for i in ids] if isinstance(ids, (list, tuple)) else ids


def _as_tensor(rows: list[Any], kind: str) -> Any:
    if kind not in ("pt", "np"):
        raise ConfigError(f"return_tensors={kind!r}: expected None, 'pt' or 'np'.")
    if len({len(row) for row in rows}) > 1:
        raise ConfigError("The texts encode to different lengths: pass padding=True to batch them.")
    if kind == "np":
        import numpy as np

        return np.asarray(rows, dtype=np.int64)
    import torch

    return torch.tensor(rows, dtype=torch.long)
