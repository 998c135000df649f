"""mBART / mBART-50 tokenization from ``sentencepiece.bpe.model`` with fairseq's id layout.

fairseq numbers the vocabulary ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, then the
sentencepiece pieces shifted by one (their ``<unk>``/``<s>``/``</s>`` at 0-2 give way to the
four above), then one token per language code, then ``<mask>``. mBART ends a text with
``</s> <lang>``; mBART-50 starts it with ``<lang>`` and ends it with ``</s>``.
"""

from __future__ import annotations

import re
from pathlib import Path

from mmspeech.errors import ConfigError, MissingDependencyError

FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
FAIRSEQ_OFFSET = 1  # sentencepiece id + 1 = fairseq id (for real pieces)
UNK_ID = 3
SPIECE_SPACE = "\u2581"  # "▁", sentencepiece's word boundary

# fairseq's language codes (mBART-25, then the 27 that mBART-50 adds), in id order
MBART_LANGUAGES = [
    "ar_AR", "cs_CZ", "de_DE", "en_XX", "es_XX", "et_EE", "fi_FI", "fr_XX", "gu_IN", "hi_IN",
    "it_IT", "ja_XX", "kk_KZ", "ko_KR", "lt_LT", "lv_LV", "my_MM", "ne_NP", "nl_XX", "ro_RO",
    "ru_RU", "si_LK", "tr_TR", "vi_VN", "zh_CN",
]  # fmt: skip
MBART50_LANGUAGES = [
    *MBART_LANGUAGES,
    "af_ZA", "az_AZ", "bn_IN", "fa_IR", "he_IL", "hr_HR", "id_ID", "ka_GE", "km_KH", "mk_MK",
    "ml_IN", "mn_MN", "mr_IN", "pl_PL", "ps_AF", "pt_XX", "sv_SE", "sw_KE", "ta_IN", "te_IN",
    "th_TH", "tl_XX", "uk_UA", "ur_PK", "xh_ZA", "gl_ES", "sl_SI",
]  # fmt: skip


class SentencePieceBackend:
    """Encode/decode with a sentencepiece model, in fairseq ids, with language-code framing."""

    def __init__(
        self,
        model_file: Path,
        *,
        mbart50: bool,
        src_lang: str | None,
        tgt_lang: str | None,
        extra_special_tokens: list[str],
    ):
        try:
            import sentencepiece
        except ImportError as exc:
            raise MissingDependencyError(
                "Reading sentencepiece.bpe.model needs sentencepiece: pip install 'mmspeech[text]'."
            ) from exc
        self.model = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
        self.mbart50 = mbart50
        languages = MBART50_LANGUAGES if mbart50 else MBART_LANGUAGES
        pieces = self.model.get_piece_size()
        self.vocab: dict[str, int] = {token: i for i, token in enumerate(FAIRSEQ_SPECIALS)}
        for index in range(3, pieces):  # sentencepiece's own specials (0-2) are replaced above
            self.vocab.setdefault(self.model.id_to_piece(index), index + FAIRSEQ_OFFSET)
        first_code = pieces + FAIRSEQ_OFFSET
        self.languages = {code: first_code + i for i, code in enumerate(languages)}
        self.vocab.update(self.languages)
        self.vocab["<mask>"] = first_code + len(languages)
        for token in extra_special_tokens:
            self.vocab.setdefault(token, len(self.vocab))
        self.tokens = {index: token for token, index in self.vocab.items()}
        self.special_ids = {
            self.vocab[t] for t in (*FAIRSEQ_SPECIALS, "<mask>", *self.languages)
        } | {self.vocab[t] for t in extra_special_tokens}
        specials = sorted((self.tokens[i] for i in self.special_ids), key=len, reverse=True)
        self._special_split = re.compile("(" + "|".join(map(re.escape, specials)) + ")")
        self.src_lang = src_lang or "en_XX"
        self.tgt_lang = tgt_lang
        self._language_id(self.src_lang)

    def _language_id(self, code: str) -> int:
        if code not in self.languages:
            raise ConfigError(
                f"Unknown language code {code!r}; this tokenizer knows {', '.join(self.languages)}."
            )
        return self.languages[code]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def token_to_id(self, token: str) -> int | None:
        return self.vocab.get(token)

    def id_to_token(self, index: int) -> str | None:
        return self.tokens.get(index)

    def _piece_ids(self, text: str) -> list[int]:
        ids = []
        for index in self.model.encode(text):
            if index == self.model.unk_id():
                ids.append(UNK_ID)
            else:
                ids.append(index + FAIRSEQ_OFFSET)
        return ids

    def encode(self, text: str, add_special_tokens: bool, target: bool = False) -> list[int]:
        """fairseq ids of ``text``; framed with the (source or target) language code."""
        ids: list[int] = []
        for part in self._special_split.split(text):
            if part in self.vocab and self.vocab[part] in self.special_ids:
                ids.append(self.vocab[part])
            elif part.strip():
                ids.extend(self._piece_ids(part))
        if not add_special_tokens:
            return ids
        language = self._language_id((self.tgt_lang or self.src_lang) if target else self.src_lang)
        eos = self.vocab["</s>"]
        return [language, *ids, eos] if self.mbart50 else [*ids, eos, language]

    def decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        tokens = []
        for index in ids:
            if skip_special_tokens and index in self.special_ids:
                continue
            tokens.append(self.tokens.get(index, "<unk>"))
        text = "".join(tokens).replace(SPIECE_SPACE, " ")
        return text[1:] if text.startswith(" ") else text
