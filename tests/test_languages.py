"""Language references (codes, ISO 639-1, names, MMS variants) → a checkpoint's codes."""

from __future__ import annotations

import pytest

from mmspeech.errors import LanguageError
from mmspeech.languages import language_name, resolve_language

SUPPORTED = ["eng", "fra", "deu", "cmn-script_simplified", "cmn-script_traditional",
             "uig-script_arabic", "swh", "ara"]  # fmt: skip


@pytest.mark.parametrize(
    ("ref", "code"),
    [
        ("fra", "fra"),
        ("fr", "fra"),  # ISO 639-1
        ("fre", "fra"),  # ISO 639-2/B
        ("FRA", "fra"),
        (" French ", "fra"),
        ("french", "fra"),
        ("français", "fra"),  # a native name
        ("English", "eng"),
        ("en", "eng"),
        ("de", "deu"),
        ("German", "deu"),
        ("Arabic", "ara"),
        ("cmn-script_simplified", "cmn-script_simplified"),
        ("CMN-Script_Traditional", "cmn-script_traditional"),
        ("uig", "uig-script_arabic"),  # the only variant of its base code
        ("Uyghur", "uig-script_arabic"),
        ("fr-CA", "fra"),  # a regional tag: its language
        ("sw", "swh"),  # the macrolanguage: its dominant member, the one supported
        ("Swahili", "swh"),
        ("arb", "ara"),  # a dominant member: its macrolanguage, the one supported
    ],
)
def test_references_resolve_to_supported_codes(ref, code):
    assert resolve_language(ref, SUPPORTED) == code


def test_without_a_supported_list_any_language_gives_its_iso639_3_code():
    assert resolve_language("French", []) == "fra"
    assert resolve_language("de", ()) == "deu"
    with pytest.raises(LanguageError, match="not a language code or name"):
        resolve_language("Frnch", [])


def test_unknown_language_suggests_close_codes():
    with pytest.raises(LanguageError) as info:
        resolve_language("Frnch", SUPPORTED)
    message = str(info.value)
    assert "'Frnch'" in message and "fra (French)" in message
    assert "mmspeech languages" in message


def test_known_but_unsupported_language_names_it_and_suggests_by_name():
    with pytest.raises(LanguageError) as info:
        resolve_language("Chinese", ["eng", "wuu", "fra"])  # Wu is not "the" Chinese
    message = str(info.value)
    assert "(Chinese, zho) is not supported by this checkpoint (3 languages)" in message
    assert "Closest supported: wuu (Wu Chinese)." in message
    with pytest.raises(LanguageError, match="not supported"):
        resolve_language("jpn", SUPPORTED)


def test_a_macrolanguage_with_several_supported_forms_is_ambiguous():
    with pytest.raises(LanguageError, match="several variants") as info:
        resolve_language("zh", SUPPORTED)
    assert "cmn-script_simplified" in str(info.value)
    assert resolve_language("Chinese", ["eng", "cmn"]) == "cmn"


def test_a_base_code_with_several_variants_is_ambiguous():
    with pytest.raises(LanguageError, match="several variants") as info:
        resolve_language("cmn", SUPPORTED)
    assert "cmn-script_simplified" in str(info.value)
    assert "cmn-script_traditional" in str(info.value)


@pytest.mark.parametrize("ref", ["", "   ", None])
def test_empty_reference_is_an_error(ref):
    with pytest.raises(LanguageError, match="Expected a language code or name"):
        resolve_language(ref, SUPPORTED)


def test_language_names():
    assert language_name("fra") == "French"
    assert language_name("eng") == "English"
    assert language_name("cmn-script_simplified") == "Mandarin Chinese (simplified script)"
    assert language_name("uig-script_arabic") == "Uyghur (arabic script)"
    assert language_name("xyz") == "xyz"  # unknown: the code itself
    assert language_name("not a code") == "not a code"
