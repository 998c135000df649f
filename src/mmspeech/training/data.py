"""Training data: manifests of (audio, transcript[, language]) and the waveforms they point to.

Accepted sources:

- a CSV / TSV file with a header row naming an audio column (``audio``, ``path``, ``file``, …)
  and a text column (``text``, ``transcript``, ``sentence``, …), optionally ``lang``/``label``;
- a JSONL file, one object per line, with the same keys;
- a folder of audio files each with a same-name ``.txt`` transcript next to it;
- a Hugging Face ``datasets`` dataset with an ``audio`` column (optional dependency).

Relative audio paths are resolved against the manifest's folder.
"""

from __future__ import annotations

import csv
import json
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mmspeech.api.options import SAMPLE_RATE
from mmspeech.audio import AUDIO_SUFFIXES
from mmspeech.errors import AudioError, DatasetError, MissingDependencyError

logger = logging.getLogger(__name__)

AUDIO_KEYS = ("audio", "path", "audio_path", "file", "filename", "wav")
TEXT_KEYS = ("text", "transcript", "transcription", "sentence", "normalized_text")
LABEL_KEYS = ("lang", "language", "label")


@dataclass(frozen=True)
class Utterance:
    """One training example: where its audio is (or the waveform itself) and what it says."""

    audio: str  # file path (absolute once read from a manifest)
    text: str = ""  # transcript ("" for classification-only data)
    label: str | None = None  # class label, e.g. the ISO 639-3 language code for LID
    waveform: np.ndarray | None = None  # (samples,) float32 at 16 kHz when already loaded

    def load(self, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """The waveform as (samples,) float32 at ``sample_rate``."""
        if self.waveform is not None:
            return self.waveform
        from mmspeech.audio import load_audio

        return load_audio(self.audio, sample_rate)


def read_manifest(
    path: str | Path, *, require_text: bool = True, allow_empty_text: bool = False
) -> list[Utterance]:
    """Read a CSV/TSV/JSONL manifest or a folder of audio + ``.txt`` files.

    Args:
        require_text: a text column is needed and every row must fill it (transcription);
            False: classification data, the text may be absent.
        allow_empty_text: with ``require_text``, rows may leave the text empty: non-speech
            clips (noise, silence) that CTC training with ``allow_empty_text`` learns to
            write nothing for.

    Raises:
        DatasetError: unreadable file, no audio/text column, missing audio files, empty
            manifest, an empty text (unless allowed).
    """
    source = Path(path)
    empty_text_ok = allow_empty_text or not require_text
    if source.is_dir():
        utterances = _read_folder(source, require_text)
    elif not source.is_file():
        raise DatasetError(
            f"Manifest {source} does not exist: give a .csv/.tsv/.jsonl file or a folder of "
            "audio files with same-name .txt transcripts."
        )
    elif source.suffix.lower() in (".jsonl", ".json"):
        utterances = _from_rows(_jsonl_rows(source), source, require_text, empty_text_ok)
    elif source.suffix.lower() in (".csv", ".tsv", ".txt"):
        utterances = _from_rows(_table_rows(source), source, require_text, empty_text_ok)
    else:
        raise DatasetError(
            f"Cannot tell the format of {source} from its suffix {source.suffix!r}: "
            "use .csv, .tsv or .jsonl (or pass a folder)."
        )
    if not utterances:
        raise DatasetError(f"{source} lists no utterances.")
    missing = [u.audio for u in utterances if not Path(u.audio).is_file()]
    if missing:
        raise DatasetError(
            f"{len(missing)} audio file(s) listed in {source} do not exist, e.g. {missing[0]}; "
            "relative paths are read from the manifest's folder."
        )
    logger.info("Read %d utterances from %s", len(utterances), source)
    return utterances


def _table_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        sample = handle.read(4096)
        handle.seek(0)
        delimiter = "\t" if "\t" in sample.split("\n", 1)[0] else ","
        return list(csv.DictReader(handle, delimiter=delimiter))


def _jsonl_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{number} is not valid JSON ({exc.msg}).") from exc
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{number} should be a JSON object, found {row!r:.60}.")
            rows.append(row)
    return rows


def _pick(keys: Iterable[str], wanted: Sequence[str]) -> str | None:
    lowered = {key.strip().lower(): key for key in keys}
    return next((lowered[w] for w in wanted if w in lowered), None)


def _from_rows(
    rows: list[dict[str, Any]], source: Path, require_text: bool, empty_text_ok: bool
) -> list[Utterance]:
    if not rows:
        return []
    audio_key = _pick(rows[0], AUDIO_KEYS)
    text_key = _pick(rows[0], TEXT_KEYS)
    label_key = _pick(rows[0], LABEL_KEYS)
    if audio_key is None or (require_text and text_key is None):
        raise DatasetError(
            f"{source} needs an audio column (one of {', '.join(AUDIO_KEYS)}) and a text column "
            f"(one of {', '.join(TEXT_KEYS)}); found columns {sorted(rows[0])}."
        )
    utterances = []
    for number, row in enumerate(rows, 1):
        audio = row.get(audio_key)
        text = row.get(text_key, "") if text_key else ""
        if not audio:
            raise DatasetError(f"Row {number} of {source} has an empty audio path.")
        if not empty_text_ok and not str(text).strip():
            raise DatasetError(
                f"Row {number} of {source} has an empty text. A clip of non-speech (noise, "
                "silence) that should transcribe as nothing needs an opt-in: "
                "allow_empty_text=True (--allow-empty-text)."
            )
        path = Path(str(audio))
        if not path.is_absolute():
            path = source.parent / path
        label = row.get(label_key) if label_key else None
        utterances.append(
            Utterance(str(path), str(text).strip(), None if label is None else str(label))
        )
    return utterances


def _read_folder(folder: Path, require_text: bool) -> list[Utterance]:
    utterances = []
    for audio in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
        transcript = audio.with_suffix(".txt")
        if not transcript.is_file():
            if require_text:
                raise DatasetError(
                    f"{audio} has no transcript: expected {transcript.name} next to it."
                )
            continue
        text = transcript.read_text(encoding="utf-8").strip()
        label = audio.parent.name if audio.parent != folder else None
        utterances.append(Utterance(str(audio), text, label))
    return utterances


def from_hf_dataset(
    dataset: Any, *, text_column: str = "sentence", label_column: str | None = None
) -> list[Utterance]:
    """Utterances from a Hugging Face ``datasets`` dataset with an ``audio`` column.

    The audio is decoded and resampled to 16 kHz here (datasets' own decoding needs extras).
    """
    try:
        import datasets  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            "Reading a Hugging Face dataset needs the 'datasets' package: "
            "pip install 'mmspeech[train]' datasets"
        ) from exc
    from mmspeech.audio import load_audio

    utterances = []
    for row in dataset:
        audio = row["audio"]
        if isinstance(audio, dict) and audio.get("array") is not None:
            waveform = load_audio(
                np.asarray(audio["array"], dtype=np.float32),
                source_sample_rate=int(audio["sampling_rate"]),
            )
            path = str(audio.get("path") or "")
        else:
            path = str(audio["path"] if isinstance(audio, dict) else audio)
            waveform = load_audio(path)
        label = None if label_column is None else str(row[label_column])
        utterances.append(Utterance(path, str(row.get(text_column, "")), label, waveform))
    return utterances


def load_waveforms(utterances: Sequence[Utterance], max_seconds: float = 30.0) -> list[Utterance]:
    """Decode every waveform once (16 kHz float32) so epochs read memory, not files.

    Raises:
        DatasetError: an utterance is longer than ``max_seconds`` or cannot be decoded.
    """
    loaded = []
    for utterance in utterances:
        try:
            waveform = utterance.load()
        except AudioError as exc:
            raise DatasetError(f"Cannot use {utterance.audio}: {exc}") from exc
        if len(waveform) > max_seconds * SAMPLE_RATE:
            raise DatasetError(
                f"{utterance.audio} lasts {len(waveform) / SAMPLE_RATE:.1f} s, more than the "
                f"{max_seconds:.0f} s allowed: cut long recordings into utterances first."
            )
        loaded.append(replace(utterance, waveform=waveform))
    return loaded


def split_heldout(
    utterances: Sequence[Utterance], fraction: float, seed: int = 0
) -> tuple[list[Utterance], list[Utterance]]:
    """A seeded random (train, held-out) split; at least one utterance is held out if any."""
    if not 0.0 <= fraction < 1.0:
        raise DatasetError(f"The held-out fraction must be in [0, 1), got {fraction}.")
    order = list(range(len(utterances)))
    random.Random(seed).shuffle(order)
    count = round(len(order) * fraction) if fraction else 0
    if fraction and count == 0 and len(order) > 1:
        count = 1
    held = sorted(order[:count])
    kept = sorted(order[count:])
    return [utterances[i] for i in kept], [utterances[i] for i in held]
