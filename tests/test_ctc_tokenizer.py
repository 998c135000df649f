"""Parity of mmspeech's Wav2Vec2CTCTokenizer with transformers' (the oracle), on the same files."""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mmspeech.errors import ConfigError, LanguageError
from mmspeech.processing.ctc_tokenizer import CTCDecoding, Wav2Vec2CTCTokenizer

pytestmark = pytest.mark.oracle
transformers = pytest.importorskip("transformers", reason="transformers is the test oracle")
Reference = transformers.Wav2Vec2CTCTokenizer

SPECIALS = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4}


def _with_specials(chars: str | list[str]) -> dict[str, int]:
    return {**SPECIALS, **{c: i + len(SPECIALS) for i, c in enumerate(chars)}}


# wav2vec2-base-960h style: upper-case letters, the specials first.
FLAT = _with_specials("ETAONIHSRDLUMWCFGYPBVK'XJQZ")
# XLS-R fine-tuning style: letters first, then "|", [UNK], [PAD]; <s> and </s> are not in it.
XLSR = {c: i for i, c in enumerate("abcdefghijklmnopqrstuvwxyzäöü'")}
XLSR.update({"|": len(XLSR), "[UNK]": len(XLSR) + 1, "[PAD]": len(XLSR) + 2})
XLSR_CONFIG = {"unk_token": "[UNK]", "pad_token": "[PAD]", "word_delimiter_token": "|"}
# mms-1b-all style: one vocabulary per language, ids in different orders and sizes.
NESTED = {
    "eng": _with_specials("etaoinshrdlucmwfgypbvkjxqz'"),
    "fra": _with_specials([*"esaitnrulodcpméqvgfbhxyjèàzçêkwôùîûâëïü'-", "œu"]),
    "deu": {**_with_specials(["sch", "ch", *"enirstadhulgocmbfkwzpvüäößjyxq"]), "|": 40},
    "frr": _with_specials("enrtaisdhlu"),
    "fry": _with_specials("enatrisdolgkmuwbhjpfvzyc'âêôûú"),
    "uig-script_arabic": _with_specials("ابتپجچخدرزژسشغفقكگڭلمنھوۇۆۈۋېىيئ"),
    "zzz": {"|": 0, "<pad>": 1, "q": 2},  # degenerate: no <s>, </s> nor <unk>
}


def _write(directory: Path, vocab: dict[str, Any], config: dict[str, Any] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    if config is not None:
        (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return directory


def _pair(directory: Path, **kwargs: Any) -> tuple[Wav2Vec2CTCTokenizer, Any]:
    """Ours and the reference, loaded from the same directory with the same overrides."""
    return (
        Wav2Vec2CTCTokenizer.from_pretrained(directory, **kwargs),
        Reference.from_pretrained(str(directory), **kwargs),
    )


def _added(tokenizer: Any) -> dict[int, dict[str, Any]]:
    return {
        index: dataclasses.asdict(token)
        if dataclasses.is_dataclass(token)
        else token.__getstate__()
        for index, token in tokenizer.added_tokens_decoder.items()
    }


def _state(tokenizer: Any) -> dict[str, Any]:
    return {
        "vocab": tokenizer.vocab,
        "target_lang": tokenizer.target_lang,
        "get_vocab": tokenizer.get_vocab(),
        "len": len(tokenizer),
        "vocab_size": tokenizer.vocab_size,
        "added": _added(tokenizer),
        "special_tokens": tokenizer.all_special_tokens,
        "special_ids": tokenizer.all_special_ids,
        "ids": [
            tokenizer.pad_token_id,
            tokenizer.unk_token_id,
            tokenizer.bos_token_id,
            tokenizer.eos_token_id,
            tokenizer.word_delimiter_token_id,
        ],
        "do_lower_case": tokenizer.do_lower_case,
        "delimiter_char": tokenizer.replace_word_delimiter_char,
        "clean_up": tokenizer.clean_up_tokenization_spaces,
    }


def _plain(output: Any) -> Any:
    """A decode result as plain Python values (the reference's offsets are numpy ints)."""
    if isinstance(output, str):
        return output

    def offsets(value: Any) -> Any:
        if isinstance(value, list):
            return [offsets(v) for v in value]
        if isinstance(value, dict):
            return {k: v if isinstance(v, str) else int(v) for k, v in value.items()}
        return value

    return (output.text, offsets(output.char_offsets), offsets(output.word_offsets))


def _random_ids(rng: random.Random, high: int, pad: int | None, delimiter: int | None) -> list[int]:
    """CTC-like frames: runs of repeats, many blanks and delimiters, some ids past the vocab."""
    ids: list[int] = []
    for _ in range(rng.randrange(0, 12)):
        pick = rng.random()
        token = pad if pick < 0.3 else delimiter if pick < 0.45 else rng.randrange(0, high + 3)
        ids += [token if token is not None else 0] * rng.choice([1, 1, 2, 3])
    return ids


def _random_text(rng: random.Random, vocab: dict[str, int]) -> str:
    pieces = [*vocab, " ", "  ", "\t", "X", "q", "Ω", "E", "é", "<unk>", "<s>", "[UNK]", " <pad> "]
    pieces += [t.upper() for t in vocab if len(t) == 1]
    return "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 14)))


# -- the fixtures as pairs ---------------------------------------------------------------------

CASES = {
    "flat": (FLAT, None, {}),
    "flat-lower": (FLAT, {"do_lower_case": True}, {}),
    "xlsr": (XLSR, XLSR_CONFIG, {}),
    **{
        f"nested-{lang}": (NESTED, {"target_lang": "eng"}, {"target_lang": lang}) for lang in NESTED
    },
}


@pytest.fixture(params=list(CASES))
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Wav2Vec2CTCTokenizer, Any]:
    vocab, config, kwargs = CASES[request.param]
    return _pair(_write(tmp_path / "ckpt", vocab, config), **kwargs)


def test_state_matches(pair: tuple[Wav2Vec2CTCTokenizer, Any]) -> None:
    ours, ref = pair
    assert _state(ours) == _state(ref)


@pytest.mark.parametrize("seed", range(12))
def test_decode_random_ids(pair: tuple[Wav2Vec2CTCTokenizer, Any], seed: int) -> None:
    ours, ref = pair
    rng = random.Random(seed)
    for _ in range(40):
        ids = _random_ids(rng, len(ref), ref.pad_token_id, ref.word_delimiter_token_id)
        for skip in (False, True):
            kwargs = {"skip_special_tokens": skip}
            assert ours.decode(ids, **kwargs) == ref.decode(ids, **kwargs), ids
            kwargs |= {"output_char_offsets": True, "output_word_offsets": True}
            assert _plain(ours.decode(ids, **kwargs)) == _plain(ref.decode(ids, **kwargs)), ids
        for kwargs in (
            {"group_tokens": False},
            {"spaces_between_special_tokens": True},
            {"clean_up_tokenization_spaces": True},
            {"output_char_offsets": True},
            {"output_word_offsets": True, "group_tokens": False},
        ):
            assert _plain(ours.decode(ids, **kwargs)) == _plain(ref.decode(ids, **kwargs)), ids


@pytest.mark.parametrize("seed", range(4))
def test_batch_decode_random_ids(pair: tuple[Wav2Vec2CTCTokenizer, Any], seed: int) -> None:
    ours, ref = pair
    rng = random.Random(seed)
    rows = [_random_ids(rng, len(ref), ref.pad_token_id, None) + [0] * 12 for _ in range(6)]
    # The reference's batch_decode raises KeyError when the first row decodes to no token and
    # offsets are asked for (see test_batch_decode_first_row_empty): start with a letter.
    rows[0].insert(0, next(i for t, i in ref.encoder.items() if t not in ref.all_special_tokens))
    batch = np.array([row[:12] for row in rows])
    for sequences in (rows, batch, torch.from_numpy(batch)):
        for skip in (False, True):
            assert ours.batch_decode(sequences, skip) == ref.batch_decode(sequences, skip)
            kwargs = {"skip_special_tokens": skip, "output_word_offsets": True}
            assert _plain(ours.batch_decode(sequences, **kwargs)) == _plain(
                ref.batch_decode(sequences, **kwargs)
            )
    kwargs = {"output_char_offsets": True, "output_word_offsets": True}
    assert _plain(ours.batch_decode(rows, **kwargs)) == _plain(ref.batch_decode(rows, **kwargs))


@pytest.mark.parametrize("seed", range(6))
def test_tokenize_and_encode_random_text(pair: tuple[Wav2Vec2CTCTokenizer, Any], seed: int) -> None:
    ours, ref = pair
    rng = random.Random(seed)
    for _ in range(60):
        text = _random_text(rng, ours.encoder)
        assert ours.tokenize(text) == ref.tokenize(text), text
        if None not in ref.convert_tokens_to_ids(ref.tokenize(text)):
            assert ours.encode(text) == ref.encode(text), text
            assert dict(ours(text)) == dict(ref(text)), text


# -- decoding: hand-picked edge cases ----------------------------------------------------------

EDGE_IDS = [
    [],
    [0],
    [0, 0, 0],
    [4],
    [4, 4, 0, 4],
    [4, 7, 7, 0, 7, 4, 4, 6, 4],  # leading/trailing and repeated delimiters, blank-split repeat
    [7, 1, 7, 2, 8, 3, 3, 9],  # <s>, </s> and <unk> in the middle
    [7, 0, 1, 0, 7],  # a special token between blanks
    [5, 4, 0, 4, 6],  # delimiters around a blank
    [3, 3, 0, 3, 4, 31, 32, 33, 99],  # unk runs, the last id, ids past the vocabulary
    [31, 4, 4, 4, 27, 5, 4, 0],  # an apostrophe word
]


@pytest.mark.parametrize("ids", EDGE_IDS)
@pytest.mark.parametrize("skip", [False, True])
def test_decode_edge_cases(tmp_path: Path, ids: list[int], skip: bool) -> None:
    ours, ref = _pair(_write(tmp_path, FLAT))
    for offsets in ({}, {"output_char_offsets": True}, {"output_word_offsets": True},
                    {"output_char_offsets": True, "output_word_offsets": True}):  # fmt: skip
        expected = _plain(ref.decode(ids, skip_special_tokens=skip, **offsets))
        assert _plain(ours.decode(ids, skip_special_tokens=skip, **offsets)) == expected


def test_decode_input_types_and_single_ids(tmp_path: Path) -> None:
    ours, ref = _pair(_write(tmp_path, FLAT))
    ids = [0, 7, 7, 4, 6, 0]
    for value in (
        ids,
        tuple(ids),
        np.array(ids),
        torch.tensor(ids),
        [torch.tensor(i) for i in ids],
    ):
        assert ours.decode(value) == ref.decode(value) == "A T"
    # A bare id decodes as the characters of its token: the blank survives.
    for single in (0, 3, 4, 7, np.int64(7), torch.tensor(0)):
        for skip in (False, True):
            assert ours.decode(single, skip) == ref.decode(single, skip)
    assert ours.decode(0) == "<pad>"
    assert ours.batch_decode([0, 7, 3]) == ref.batch_decode([0, 7, 3]) == ["<pad>", "A", "<unk>"]
    # A 2-D input to decode() is decoded row by row (the reference raises on it).
    assert ours.decode(torch.tensor([ids, ids])) == ["A T", "A T"]


def test_batch_decode_first_row_empty(tmp_path: Path) -> None:
    ours, ref = _pair(_write(tmp_path, FLAT))
    rows = [[0, 1, 0], [7, 4, 6]]  # the first row is all special tokens
    kwargs = {"skip_special_tokens": True, "output_word_offsets": True}
    with pytest.raises(KeyError):
        ref.batch_decode(rows, **kwargs)
    out = ours.batch_decode(rows, **kwargs)
    assert out.text == ["", "A T"] and out.char_offsets is None
    assert out.word_offsets[0] == [] and [w["word"] for w in out.word_offsets[1]] == ["A", "T"]


def test_offsets_are_python_ints_and_result_indexable(tmp_path: Path) -> None:
    ours, _ = _pair(_write(tmp_path, FLAT))
    out = ours.decode([4, 7, 7, 0, 6], output_word_offsets=True)
    assert isinstance(out, CTCDecoding) and out.char_offsets is None
    assert out["word_offsets"] == [{"word": "AT", "start_offset": 1, "end_offset": 5}]
    assert type(out.word_offsets[0]["start_offset"]) is int  # the reference gives numpy ints


def test_skip_special_tokens_removes_blanks_before_grouping(tmp_path: Path) -> None:
    ours, ref = _pair(_write(tmp_path, FLAT))
    ids = [7, 0, 7, 4, 6]  # "A", blank, "A": two letters, unless the blank is dropped first
    assert ours.decode(ids) == ref.decode(ids) == "AA T"
    assert ours.decode(ids, skip_special_tokens=True) == ref.decode(ids, True) == "A T"
    words = ours.decode(ids, skip_special_tokens=True, output_word_offsets=True).word_offsets
    assert words == [{"word": "A", "start_offset": 0, "end_offset": 2},
                     {"word": "T", "start_offset": 3, "end_offset": 4}]  # fmt: skip


def test_convert_between_ids_and_tokens(tmp_path: Path) -> None:
    ours, ref = _pair(_write(tmp_path, FLAT))
    ids = [0, 1, 4, 7, 3, 99]
    for skip in (False, True):
        assert ours.convert_ids_to_tokens(ids, skip) == ref.convert_ids_to_tokens(ids, skip)
    assert ours.convert_ids_to_tokens(99) == ref.convert_ids_to_tokens(99) == "<unk>"
    tokens = ["A", "|", "<pad>", "a", "Ω", "<s>"]
    assert ours.convert_tokens_to_ids(tokens) == ref.convert_tokens_to_ids(tokens)
    assert ours.convert_tokens_to_ids("T") == ref.convert_tokens_to_ids("T") == 6


# -- encoding ------------------------------------------------------------------------------------


@pytest.mark.parametrize("lower", [False, True])
def test_encode_case_unknown_and_specials(tmp_path: Path, lower: bool) -> None:
    ours, ref = _pair(_write(tmp_path, FLAT), do_lower_case=lower)
    texts = ["HELLO WORLD", "hello world", "Hello, Wörld!", "  two  spaces ", "<unk> x <s>A",
             "IT'S", "tab\there", "ß", ""]  # fmt: skip
    for text in texts:
        assert ours.tokenize(text) == ref.tokenize(text), text
        assert ours.encode(text) == ref.encode(text), text
    assert ours.encode("ab") == ([7, 24] if lower else [3, 3])


def test_unknown_character_without_unk_token_is_an_error(tmp_path: Path) -> None:
    ours, ref = _pair(_write(tmp_path, NESTED, {"target_lang": "zzz"}))
    assert ref.encode("q x") == [2, 0, None]  # the reference lets None through
    assert ours.encode("q q") == ref.encode("q q") == [2, 0, 2]
    with pytest.raises(ConfigError, match=r"'x'.*no unknown token"):
        ours.encode("q x")


def test_call_batches_padding_and_tensors(tmp_path: Path) -> None:
    ours, ref = _pair(_write(tmp_path / "n", NESTED, {"target_lang": "eng"}), target_lang="deu")
    texts = ["schön", "ich bin", "", "x"]
    for kwargs in (
        {},
        {"padding": True},
        {"padding": "longest", "pad_to_multiple_of": 4},
        {"padding": "max_length", "max_length": 6},
        {"max_length": 3},
        {"padding": True, "truncation": True, "max_length": 3},
        {"padding": True, "return_attention_mask": False},
    ):
        assert dict(ours(texts, **kwargs)) == dict(ref(texts, **kwargs)), kwargs
        assert dict(ours(texts[1], **kwargs)) == dict(ref(texts[1], **kwargs)), kwargs
    for kind in ("pt", "np"):
        got = ours(texts, padding=True, return_tensors=kind)
        want = ref(texts, padding=True, return_tensors=kind)
        for key in ("input_ids", "attention_mask"):
            assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape
            assert np.array_equal(np.asarray(got[key]), np.asarray(want[key]))
        single = ours("ich", return_tensors=kind).input_ids  # "i", "ch": a batch of one
        assert single.tolist() == ref("ich", return_tensors=kind).input_ids.tolist() == [[9, 6]]


# -- languages -----------------------------------------------------------------------------------


def test_vocab_keys_are_the_languages(tmp_path: Path) -> None:
    ours, ref = _pair(_write(tmp_path, NESTED, {"target_lang": "eng"}))
    assert list(ours.vocab.keys()) == list(ref.vocab.keys()) == list(NESTED)
    assert ours.languages == sorted(NESTED)
    assert ours.target_lang == "eng"


def test_set_target_lang_switching(tmp_path: Path) -> None:
    ours, ref = _pair(_write(tmp_path, NESTED, {"target_lang": "eng"}))
    rng = random.Random(0)
    for lang in ["fra", "deu", "zzz", "eng", "uig-script_arabic", "deu", "fra", "fry"]:
        ours.set_target_lang(lang)
        ref.set_target_lang(lang)
        assert _state(ours) == _state(ref), lang
        for _ in range(30):
            ids = _random_ids(rng, ref.vocab_size, ref.pad_token_id, ref.word_delimiter_token_id)
            kwargs = {"output_char_offsets": True, "output_word_offsets": True}
            assert _plain(ours.decode(ids, **kwargs)) == _plain(ref.decode(ids, **kwargs))
            text = _random_text(rng, ours.encoder)
            assert ours.tokenize(text) == ref.tokenize(text), (lang, text)


def test_nested_vocab_without_target_lang_is_a_clear_error(tmp_path: Path) -> None:
    directory = _write(tmp_path, NESTED, {})
    with pytest.raises(TypeError):  # the reference's obscure failure
        Reference.from_pretrained(str(directory))
    with pytest.raises(LanguageError, match="target_lang") as caught:
        Wav2Vec2CTCTokenizer.from_pretrained(directory)
    assert "eng" in str(caught.value) and "7 languages" in str(caught.value)


@pytest.mark.parametrize(
    ("code", "suggested"),
    [
        ("fr", ["fra", "frr", "fry"]),
        ("FRA", ["fra"]),
        ("englsh", ["eng"]),
        ("uig", ["uig-script_arabic"]),
        ("eng-US", ["eng"]),
    ],
)
def test_unknown_language_suggests_close_codes(
    tmp_path: Path, code: str, suggested: list[str]
) -> None:
    directory = _write(tmp_path, NESTED, {"target_lang": "eng"})
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(directory)
    for attempt in (
        lambda: Wav2Vec2CTCTokenizer.from_pretrained(directory, target_lang=code),
        lambda: tokenizer.set_target_lang(code),
    ):
        with pytest.raises(LanguageError, match=repr(code)) as caught:
            attempt()
        assert all(s in str(caught.value) for s in suggested), str(caught.value)
    assert tokenizer.target_lang == "eng"  # a failed switch leaves the tokenizer as it was


def test_flat_vocab_has_no_languages(tmp_path: Path) -> None:
    directory = _write(tmp_path, FLAT)
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(directory)
    with pytest.raises(LanguageError, match="not nested"):
        tokenizer.set_target_lang("eng")
    with pytest.raises(LanguageError, match="not nested"):
        Wav2Vec2CTCTokenizer.from_pretrained(directory, target_lang="eng")


# -- files ---------------------------------------------------------------------------------------


def _config(directory: Path) -> dict[str, Any]:
    config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
    for key in ("backend", "is_local", "local_files_only", "model_specific_special_tokens"):
        config.pop(key, None)  # the reference's loader bookkeeping, written back by its save
    config.setdefault("clean_up_tokenization_spaces", False)  # we always write it
    return config


@pytest.mark.parametrize("case", ["flat", "xlsr", "nested-deu", "nested-zzz"])
def test_save_ours_load_reference(tmp_path: Path, case: str) -> None:
    vocab, config, kwargs = CASES[case]
    ours, ref = _pair(_write(tmp_path / "src", vocab, config), **kwargs)
    if case.startswith("nested"):
        for tokenizer in (ours, ref):
            tokenizer.set_target_lang("fra")
    ours.save_pretrained(tmp_path / "ours")
    ref.save_pretrained(tmp_path / "ref")
    assert _config(tmp_path / "ours") == _config(tmp_path / "ref")
    for name in ("vocab.json", "added_tokens.json"):
        assert (tmp_path / "ours" / name).is_file() == (tmp_path / "ref" / name).is_file()
        if (tmp_path / "ref" / name).is_file():
            assert (tmp_path / "ours" / name).read_text() == (tmp_path / "ref" / name).read_text()
    special_map = json.loads((tmp_path / "ours" / "special_tokens_map.json").read_text())
    assert special_map == ours.special_tokens_map
    reloaded = Reference.from_pretrained(str(tmp_path / "ours"))
    assert _state(reloaded) == _state(Reference.from_pretrained(str(tmp_path / "ref")))
    assert _state(Wav2Vec2CTCTokenizer.from_pretrained(tmp_path / "ours")) == _state(reloaded)


@pytest.mark.parametrize("case", ["flat-lower", "xlsr", "nested-fra", "nested-zzz"])
def test_save_reference_load_ours(tmp_path: Path, case: str) -> None:
    vocab, config, kwargs = CASES[case]
    _, ref = _pair(_write(tmp_path / "src", vocab, config), **kwargs)
    ref.save_pretrained(tmp_path / "ref")
    ours = Wav2Vec2CTCTokenizer.from_pretrained(tmp_path / "ref")
    assert _state(ours) == _state(Reference.from_pretrained(str(tmp_path / "ref")))
    if case.startswith("nested"):
        assert ours.target_lang == CASES[case][2]["target_lang"]


def test_mms_layout_with_legacy_files(tmp_path: Path) -> None:
    """The layout of the MMS hub repos: no added_tokens_decoder, a special_tokens_map.json."""
    config = {"bos_token": "<s>", "clean_up_tokenization_spaces": True, "do_lower_case": False,
              "eos_token": "</s>", "model_max_length": 1000000000000000019884624838656,
              "pad_token": "<pad>", "replace_word_delimiter_char": " ", "target_lang": "eng",
              "tokenizer_class": "Wav2Vec2CTCTokenizer", "unk_token": "<unk>",
              "word_delimiter_token": "|"}  # fmt: skip
    directory = _write(tmp_path, NESTED, config)
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    (directory / "special_tokens_map.json").write_text(json.dumps(special))
    (directory / "added_tokens.json").write_text(json.dumps({"<new>": 40}))
    for lang in (None, "fra"):
        kwargs = {} if lang is None else {"target_lang": lang}
        ours, ref = _pair(directory, **kwargs)
        assert _state(ours) == _state(ref)
        ids = [ours.convert_tokens_to_ids(c) for c in "e|'|s|.|e"]  # " ' " and " ." are cleaned
        assert ours.decode(ids) == ref.decode(ids)
        assert ours.decode(ids, clean_up_tokenization_spaces=False) == ref.decode(
            ids, clean_up_tokenization_spaces=False
        )


def test_from_pretrained_overrides_config(tmp_path: Path) -> None:
    ours, ref = _pair(_write(tmp_path, FLAT, {"do_lower_case": False}), do_lower_case=True)
    assert ours.do_lower_case and ref.do_lower_case
    assert ours.decode([7, 4, 6]) == ref.decode([7, 4, 6]) == "a t"


def test_mmspeech_does_not_import_transformers() -> None:
    code = (
        "import sys, mmspeech.processing.ctc_tokenizer; "
        "assert 'transformers' not in sys.modules, 'transformers was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
