"""Language references → the codes a checkpoint uses, and codes → English names.

MMS checkpoints label languages with ISO 639-3 codes, some with a variant suffix
(``cmn-script_simplified``, ``uig-script_arabic``). Users may write the code, the ISO 639-1 code
(``fr``), the bibliographic ISO 639-2 code (``fre``) or an English or native name (``French``,
``français``). The code and name data come from ``langcodes`` (with ``language_data``), not from a
table of our own.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Collection
from typing import Any

from mmspeech.errors import LanguageError, MissingDependencyError

_CODE = re.compile(r"^[A-Za-z]{2,3}$")  # an ISO 639 code without variant
_MAX_SUGGESTIONS = 6


def resolve_language(ref: str, supported: Collection[str]) -> str:
    """The code in ``supported`` that ``ref`` names.

    Matching, case-insensitive: the code itself (``cmn-script_simplified``); an ISO 639-1/2/3 code
    or a language name whose ISO 639-3 code is a supported code or the base of exactly one
    supported variant (``cmn`` → ``cmn-script_simplified`` if it is the only ``cmn`` variant);
    failing that, a language of the same macrolanguage where langcodes knows the member as the
    dominant one (``sw``/``Swahili`` → ``swh``, ``Arabic`` → ``arb``).

    Args:
        ref: what the user wrote: ``"fra"``, ``"fr"``, ``"French"``, ``"cmn-script_simplified"``.
        supported: the checkpoint's language codes. Empty means "any language": the ISO 639-3
            code of ``ref`` is returned.

    Raises:
        LanguageError: ``ref`` is not a language, is not supported, or names several variants;
            the message lists the closest supported codes with their names.
    """
    key = ref.strip().casefold() if isinstance(ref, str) else ""
    if not key:
        raise LanguageError(
            f"Expected a language code or name such as 'fra', 'fr' or 'French'; found {ref!r}."
        )
    folded = {code.casefold(): code for code in supported}
    if key in folded:
        return folded[key]
    iso3 = _iso639_3(key)
    if not supported:
        if iso3 is None:
            raise LanguageError(
                f"{ref!r} is not a language code or name known to langcodes: use an ISO 639-3 "
                "code ('fra'), an ISO 639-1 code ('fr') or an English name ('French')."
            )
        return iso3
    bases = {key.split("-")[0], iso3} - {None}
    matches = [code for low, code in folded.items() if low in bases or low.split("-")[0] in bases]
    if not matches and iso3 is not None:  # "Swahili" (swa) → swh, "Arabic" (ara) → arb
        macro = _macrolanguage(iso3)
        matches = [code for low, code in folded.items()
                   if _macrolanguage(low.split("-")[0]) == macro]  # fmt: skip
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise LanguageError(
            f"{ref!r} matches several variants of this checkpoint: "
            f"{_describe(sorted(matches))}. Pass one of them exactly."
        )
    close = _suggestions(key, iso3, folded)
    hint = f" Closest supported: {_describe(close)}." if close else ""
    what = f" ({language_name(iso3)}, {iso3})" if iso3 and key != iso3 else ""
    raise LanguageError(
        f"Language {ref!r}{what} is not supported by this checkpoint ({len(folded)} languages)."
        f"{hint} List the supported codes with `mmspeech languages`."
    )


def language_name(code: str) -> str:
    """The English name of a language code (``"fra"`` → ``"French"``; variants keep their suffix:
    ``"cmn-script_simplified"`` → ``"Mandarin Chinese (simplified script)"``). Unknown codes are
    returned unchanged."""
    base, _, variant = code.partition("-")
    name = _base_name(base.casefold())
    if name is None:
        return code
    if variant:
        kind, _, value = variant.partition("_")
        name += f" ({value.replace('_', ' ')} {kind})" if value else f" ({variant})"
    return name


@functools.lru_cache(maxsize=4096)
def _base_name(base: str) -> str | None:
    langcodes = _langcodes()
    if not _CODE.match(base):
        return None
    try:
        language = langcodes.Language.get(base)
    except (ValueError, LookupError):
        return None
    name = str(language.display_name())
    return None if not language.is_valid() or name.startswith("Unknown language") else name


@functools.lru_cache(maxsize=1024)
def _iso639_3(key: str) -> str | None:
    """ISO 639-3 code of a code or a name, or None if langcodes does not know it."""
    langcodes = _langcodes()
    base = key.split("-")[0]
    try:
        language = langcodes.Language.get(base) if _CODE.match(base) else langcodes.find(key)
    except (ValueError, LookupError):
        return None
    if not language.is_valid() or _base_name(language.language or "") is None:
        return None
    return str(language.to_alpha3())


@functools.lru_cache(maxsize=4096)
def _macrolanguage(base: str) -> str | None:
    """ISO 639-3 code of the macrolanguage a dominant member stands for (swh → swa), else
    the code's own ISO 639-3 code; None if not a code."""
    if _base_name(base) is None:
        return None
    try:
        return str(_langcodes().Language.get(base).prefer_macrolanguage().to_alpha3())
    except (ValueError, LookupError):
        return None


def _suggestions(key: str, iso3: str | None, folded: dict[str, str]) -> list[str]:
    """Supported codes close to what was asked: by code spelling, then by name."""
    found = [code for low, code in folded.items() if low.startswith(key) or key.startswith(low)]
    found += [folded[low] for low in difflib.get_close_matches(key, folded, n=3, cutoff=0.6)]
    names = {language_name(code).casefold(): code for code in folded.values()}
    wanted = [key] + ([language_name(iso3).casefold()] if iso3 else [])
    for name in wanted:
        found += [code for low, code in names.items() if name in low.split(" (")[0].split()]
        found += [code for low, code in names.items() if low.startswith(name)]
        found += [names[low] for low in difflib.get_close_matches(name, names, n=3, cutoff=0.6)]
    return list(dict.fromkeys(found))[:_MAX_SUGGESTIONS]


def _describe(codes: list[str]) -> str:
    return ", ".join(f"{code} ({language_name(code)})" for code in codes)


def _langcodes() -> Any:
    try:
        import langcodes
    except ImportError as exc:  # a core dependency; only a broken install lacks it
        raise MissingDependencyError(
            "Language codes need the 'langcodes' and 'language_data' packages: "
            "pip install langcodes language_data (they come with mmspeech)."
        ) from exc
    return langcodes


@functools.lru_cache(maxsize=4096)
def iso639_1(code: str) -> str | None:
    """The two-letter ISO 639-1 code of an MMS code (``"fra"`` → ``"fr"``,
    ``"cmn-script_simplified"`` → ``"zh"``), or None when the language has none."""
    base = code.split("-")[0].casefold()
    if _base_name(base) is None:
        return None
    try:
        language = _langcodes().Language.get(base)
        forms = [language.language, language.prefer_macrolanguage().language]
    except (ValueError, LookupError):
        return None
    return next((form for form in forms if form and len(form) == 2), None)
