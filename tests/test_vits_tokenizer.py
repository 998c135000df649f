"""VitsTokenizer: ids identical to the oracle's (transformers' VitsTokenizer)."""

from __future__ import annotations

import builtins
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from mmspeech import VitsTokenizer
from mmspeech.errors import EmptyTextError, MissingDependencyError

pytestmark = pytest.mark.oracle
transformers = pytest.importorskip("transformers")


@pytest.fixture(autouse=True)
def shared_romanizer(monkeypatch):
    """The oracle builds a new uroman.Uroman (~5 s) for every text: hand it one shared instance
    (the same romaniser, so the oracle's ids are unchanged; only faster)."""
    import uroman

    from mmspeech.processing.vits_tokenizer import load_romanizer

    shared = load_romanizer(uroman)  # built (once) before the class is patched
    module = transformers.models.vits.tokenization_vits
    monkeypatch.setattr(module.ur, "Uroman", lambda: shared)


CHARACTERS = ["_", *" abcdefghijklmnopqrstuvwxyz'-", "é", "ü", "ţ"]
TEXTS = [
    "Hello, World!",  # ASCII, capitals, punctuation
    "The quick brown fox -- it's 42 km/h!!",
    "Café crème, über naïve",  # accented Latin (some in the vocabulary, some not)
    "«¿Qué?» — ¡Sí! (a) [b] {c} ... ; : \" ' ` ~ @ # $ % ^ & * + = | \\ / < >",
    "  spaces   inside  ",
    "Привет, мир!",  # Cyrillic: uroman
    "안녕하세요 세계",  # Korean: uroman
    "Mixed Ελληνικά and ASCII",  # Greek: uroman
    "Țară",  # Romanian comma-below t
]
SETTINGS = [
    {"add_blank": True, "normalize": True, "is_uroman": True},
    {"add_blank": False, "normalize": True, "is_uroman": True},
    {"add_blank": True, "normalize": True, "is_uroman": True, "language": "ron"},
]


def write_tokenizer(directory: Path, **settings: Any) -> Any:
    """Save the reference tokenizer (vocab.json + tokenizer_config.json); return it."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab_file = directory / "source-vocab.json"
    vocab_file.write_text(json.dumps({c: i for i, c in enumerate(CHARACTERS)}))
    reference = transformers.VitsTokenizer(str(vocab_file), phonemize=False, **settings)
    reference.save_pretrained(directory)
    return reference


@pytest.mark.parametrize("settings", SETTINGS, ids=["blank", "no-blank", "ron"])
def test_ids_match_reference(tmp_path, settings):
    reference = write_tokenizer(tmp_path, **settings)
    ours = VitsTokenizer.from_pretrained(tmp_path)
    for text in TEXTS:
        assert ours(text).input_ids == reference(text).input_ids, text
    assert ours.pad_token_id == reference.pad_token_id
    assert ours.unk_token_id == reference.unk_token_id


def test_pre_romanised_text_matches(tmp_path):
    """romanize=False takes text romanised beforehand (e.g. by the Perl uroman)."""
    reference = write_tokenizer(tmp_path, is_uroman=False)
    ours = VitsTokenizer.from_pretrained(tmp_path)
    for text in ("annyeonghaseyo segye", "privet, mir!"):
        assert ours(text, romanize=False).input_ids == reference(text).input_ids


def test_unnormalised_text_matches(tmp_path, caplog):
    reference = write_tokenizer(tmp_path, normalize=False, is_uroman=False)
    ours = VitsTokenizer.from_pretrained(tmp_path)
    for text in ("hello world", "Hi there"):
        with caplog.at_level(logging.WARNING):
            assert ours(text).input_ids == reference(text).input_ids
    assert "'H'" in caplog.text  # the unknown capital is reported


def test_batch_padding_matches(tmp_path):
    reference = write_tokenizer(tmp_path, is_uroman=False)
    ours = VitsTokenizer.from_pretrained(tmp_path)
    texts = ["ab", "hello there"]
    expected = reference(texts, padding=True, return_tensors="pt")
    found = ours(texts, padding=True, return_tensors="pt")
    assert torch.equal(found.input_ids, expected["input_ids"])
    assert torch.equal(found.attention_mask, expected["attention_mask"])
    assert ours.decode(ours("hello").input_ids) == "hello"


def test_dropped_characters_are_logged(tmp_path, caplog):
    write_tokenizer(tmp_path, is_uroman=False)
    ours = VitsTokenizer.from_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="mmspeech.processing.vits_tokenizer"):
        ours("Hi, you!")
    assert "','" in caplog.text and "'!'" in caplog.text


def test_text_that_normalises_to_nothing(tmp_path):
    write_tokenizer(tmp_path, is_uroman=False)
    ours = VitsTokenizer.from_pretrained(tmp_path)
    with pytest.raises(EmptyTextError, match="Nothing to synthesise"):
        ours("!!! ???")
    with pytest.raises(ValueError):
        ours("   ")


def test_phonemize_names_the_missing_package(tmp_path, monkeypatch):
    write_tokenizer(tmp_path, is_uroman=False)
    ours = VitsTokenizer.from_pretrained(tmp_path, phonemize=True)
    real_import = builtins.__import__

    def no_phonemizer(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "phonemizer":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_phonemizer)
    with pytest.raises(MissingDependencyError, match="phonemizer"):
        ours("hello")


def test_missing_uroman_is_a_clear_error(tmp_path, monkeypatch):
    write_tokenizer(tmp_path, is_uroman=True)
    ours = VitsTokenizer.from_pretrained(tmp_path)
    real_import = builtins.__import__

    def no_uroman(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "uroman":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_uroman)
    assert ours("plain ascii").input_ids  # ASCII text needs no romaniser
    with pytest.raises(MissingDependencyError, match="pip install uroman"):
        ours("Привет")


def test_save_and_reload(tmp_path):
    write_tokenizer(tmp_path / "src", is_uroman=True, language="kor")
    ours = VitsTokenizer.from_pretrained(tmp_path / "src")
    ours.save_pretrained(tmp_path / "out")
    again = VitsTokenizer.from_pretrained(tmp_path / "out")
    reference = transformers.VitsTokenizer.from_pretrained(tmp_path / "out")
    assert again.language == "kor" and again.is_uroman
    for text in TEXTS[:3]:
        assert again(text).input_ids == reference(text).input_ids


ADDED_TOKEN_TEXTS = [
    "Hello <laugh> world",  # a token outside the vocabulary's characters
    "hello<laugh>world",
    "<laugh>",  # only an added token: no blanks at all
    "xaby zab ab",  # a token made of vocabulary characters survives normalisation
    "a  <breath>  b",  # lstrip / rstrip take the spaces along
    "<breath>x <unk> y <pad>",  # the special tokens are matched whole too
    "HELLO, World! é",
    "Привет",  # uroman, then split
]


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("add_blank", [True, False])
def test_added_tokens_match_reference(tmp_path, normalize, add_blank):
    """Added tokens are one id each, blanks only inside the character pieces between them."""
    reference = write_tokenizer(tmp_path, add_blank=add_blank, is_uroman=True)
    reference.add_tokens(
        ["<laugh>", "ab", transformers.AddedToken("<breath>", lstrip=True, rstrip=True)]
    )
    reference.save_pretrained(tmp_path)
    ours = VitsTokenizer.from_pretrained(tmp_path)
    assert len(ours) == len(reference)
    for text in ADDED_TOKEN_TEXTS:
        expected = reference(text, normalize=normalize).input_ids
        assert ours(text, normalize=normalize).input_ids == expected, text
        assert ours.tokenize(text, normalize=normalize) == reference.tokenize(
            text, normalize=normalize
        ), text
    if not normalize:
        assert ours("<laugh>", normalize=False).input_ids == [
            reference.convert_tokens_to_ids("<laugh>")
        ]


def test_unnormalised_text_keeps_case_and_punctuation(tmp_path, caplog):
    """normalize=False: no lower-casing, nothing dropped; unknown characters become <unk>."""
    reference = write_tokenizer(tmp_path, is_uroman=True)
    ours = VitsTokenizer.from_pretrained(tmp_path)
    for text in TEXTS:
        with caplog.at_level(logging.WARNING):
            found = ours(text, normalize=False).input_ids
        assert found == reference(text, normalize=False).input_ids, text
    assert ours.unk_token_id in ours("Hi!", normalize=False).input_ids
    assert "'!'" in caplog.text


def test_special_token_inside_the_vocabulary(tmp_path):
    """A vocabulary that holds <pad> itself: its own id, still matched whole in text."""
    vocab_file = tmp_path / "source-vocab.json"
    vocab_file.write_text(json.dumps({c: i for i, c in enumerate([*CHARACTERS, "<pad>"])}))
    reference = transformers.VitsTokenizer(str(vocab_file), phonemize=False, normalize=False)
    reference.save_pretrained(tmp_path)
    ours = VitsTokenizer.from_pretrained(tmp_path)
    assert ours.pad_token_id == reference.pad_token_id == len(CHARACTERS)
    for text in ("a<pad>b", "<pad>", "x <unk>"):
        assert ours(text).input_ids == reference(text).input_ids, text
