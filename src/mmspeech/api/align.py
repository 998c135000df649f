"""Forced alignment of a known transcript: every word and character placed in time.

The transcript's words are normalised to the ASR vocabulary of the language (lower-cased, NFKC,
romanised with uroman when they hold characters the vocabulary lacks, other characters dropped);
the emissions of the whole audio are computed window by window and stitched; CTC Viterbi
(``mmspeech.ctc.align.forced_align``) places the tokens; the words come back as written.
"""

from __future__ import annotations

import logging
import unicodedata
from typing import TYPE_CHECKING, Any

import torch

from mmspeech.api.options import SAMPLE_RATE, AlignOptions, TranscribeOptions
from mmspeech.api.source import open_audio
from mmspeech.ctc.align import alignment_score, forced_align
from mmspeech.errors import AlignmentError, EmptyTextError, MissingDependencyError
from mmspeech.results import AlignedChar, AlignedWord, Alignment

if TYPE_CHECKING:
    from mmspeech.api.asr import ASRModel

logger = logging.getLogger(__name__)


def align_words(
    asr: ASRModel,
    audio: Any,
    transcript: str,
    language: str,
    options: AlignOptions | None = None,
) -> Alignment:
    """Align ``transcript`` to ``audio`` with ``asr``'s ``language`` adapter.

    Words that have no character of the vocabulary left once normalised (e.g. "—") are reported
    with zero duration at the end of the previous word and score 0.

    With ``options.wildcard`` the transcript may cover only part of the audio (a ``<star>``
    token takes the rest). ``Alignment.score`` says how well the transcript explains the audio
    it spans (:func:`mmspeech.ctc.align.alignment_score`); below ``options.min_score`` the
    result carries a warning.

    Raises:
        EmptyTextError: nothing of the transcript can be aligned.
        AlignmentError: the transcript needs more frames than the audio has.
    """
    options = options or AlignOptions()
    code = asr.set_language(language)
    vocab = {token: index for index, token in asr.tokenizer.decoder.items()}
    specials = {asr.tokenizer.pad_token, asr.tokenizer.bos_token, asr.tokenizer.eos_token}
    specials |= {asr.tokenizer.unk_token, asr.tokenizer.word_delimiter_token}
    letters = {token: index for token, index in vocab.items() if token not in specials}
    words = transcript.split()
    normalized = [normalize_word(word, letters, options.romanize) for word in words]
    if not any(normalized):
        raise EmptyTextError(
            f"Nothing in the transcript {transcript[:60]!r} is in the {code!r} vocabulary once "
            "normalised; give the transcript in that language (or romanise it)."
        )
    delimiter = vocab.get(asr.tokenizer.word_delimiter_token or "|")
    targets: list[int] = []
    owners: list[int] = []  # the word index of each target (-1: a delimiter)
    for index, form in enumerate(normalized):
        if not form:
            continue
        if targets and delimiter is not None:
            targets.append(delimiter)
            owners.append(-1)
        targets.extend(letters[char] for char in form)
        owners.extend([index] * len(form))

    source = open_audio(audio)
    emission_options = TranscribeOptions(
        window_s=options.window_s, context_s=options.context_s, batch_size=options.batch_size
    )
    log_probs = torch.cat(list(asr.emissions(source, options=emission_options)))
    try:
        spans = forced_align(
            log_probs, targets, asr.tokenizer.pad_token_id, wildcard=options.wildcard
        )
    except AlignmentError as exc:
        raise AlignmentError(
            f"The transcript ({len(words)} words, {len(targets)} tokens) does not fit "
            f"{source.duration:.2f} s of audio ({len(log_probs)} frames): {exc}"
        ) from exc
    fit = alignment_score(log_probs, spans, asr.tokenizer.pad_token_id, options.wildcard)
    warnings = []
    if fit < options.min_score:
        hint = (
            "; if it covers only part of the audio, align with wildcard=True (CLI: --partial)"
            if not options.wildcard
            else ""
        )
        warnings.append(
            f"The transcript matches the audio poorly (alignment score {fit:.2f} < "
            f"min_score={options.min_score:g}): its words are placed where they fit least "
            f"badly, not necessarily where they are spoken{hint}."
        )
        logger.info("%s", warnings[-1])
    step = asr.seconds_per_frame
    chars: dict[int, list[AlignedChar]] = {}
    for span, owner in zip(spans, owners, strict=True):
        if owner >= 0:
            char = AlignedChar(
                span.start_frame * step,
                span.end_frame * step,
                asr.tokenizer.decoder[span.token_id],
                span.probability,
            )
            chars.setdefault(owner, []).append(char)
    aligned: list[AlignedWord] = []
    for index, (word, form) in enumerate(zip(words, normalized, strict=True)):
        placed = chars.get(index)
        if not placed:
            at = aligned[-1].end if aligned else 0.0
            aligned.append(AlignedWord(at, at, word, form, 0.0))
            continue
        score = sum(c.score for c in placed) / len(placed)
        aligned.append(
            AlignedWord(placed[0].start, placed[-1].end, word, form, score, tuple(placed))
        )
    duration = source.num_samples / SAMPLE_RATE
    return Alignment(code, duration, aligned, fit, tuple(warnings))


def normalize_word(word: str, letters: dict[str, int], romanize: bool = True) -> str:
    """``word`` as characters of ``letters``: NFKC, lower-cased, romanised when it needs to be."""
    form = unicodedata.normalize("NFKC", word).lower()
    if romanize and any(char.isalpha() and char not in letters for char in form):
        form = _romanize(form).lower()
    return "".join(char for char in form if char in letters)


def _romanize(text: str) -> str:
    try:
        import uroman
    except ImportError as exc:
        raise MissingDependencyError(
            "Aligning text in a script the model's vocabulary lacks needs uroman: "
            "pip install 'mmspeech[tts]' (or pip install uroman); or pass romanize=False."
        ) from exc
    from mmspeech.processing.vits_tokenizer import load_romanizer

    return str(load_romanizer(uroman).romanize_string(text))
