"""Build the mmspeech-demo speech corpus: espeak-ng speech of frequent words in six languages.

Text comes from ``wordfreq`` (the most frequent words of each language, in its own script);
each utterance is 1-3 random words spoken by espeak-ng with one voice variant, speed and pitch.
Training and evaluation use *different* voices and speeds, so the evaluation measures how
well the models generalise to speakers they never heard (within synthetic speech).

Writes ``<out>/<lang>/<split>/<n>.wav`` (16 kHz mono) and ``<out>/<split>.tsv`` manifests with
the columns ``audio``, ``text``, ``lang`` (paths relative to the manifest).

    python scripts/demo/build_corpus.py --out /work/demo-data/corpus
"""

from __future__ import annotations

import argparse
import csv
import random
import subprocess
import tempfile
import unicodedata
from pathlib import Path

import numpy as np
import soundfile

from mmspeech.audio import load_audio

# ISO 639-3 code -> (wordfreq code, espeak-ng voice, Unicode script name prefix of its letters)
LANGUAGES = {
    "eng": ("en", "en-us", "LATIN"),
    "fra": ("fr", "fr", "LATIN"),
    "deu": ("de", "de", "LATIN"),
    "spa": ("es", "es", "LATIN"),
    "rus": ("ru", "ru", "CYRILLIC"),
    "ell": ("el", "el", "GREEK"),
}
# (voice variant, words per minute, pitch 0-99); evaluation voices and speeds are held out
TRAIN_VOICES = [
    ("m1", 140, 45),
    ("m3", 170, 40),
    ("f1", 150, 60),
    ("f4", 185, 55),
    ("m5", 200, 50),
    ("f2", 160, 65),
]
EVAL_VOICES = [("m7", 155, 48), ("f3", 178, 58)]
VOCAB_WORDS = 1200  # most frequent words per language to draw from


def word_pool(wordfreq_code: str, script: str, size: int) -> list[str]:
    """The ``size`` most frequent all-letter words of a language written in ``script``."""
    import wordfreq

    words = []
    for word in wordfreq.top_n_list(wordfreq_code, 20 * size):
        letters = unicodedata.normalize("NFC", word)
        if len(letters) < 2 or not letters.isalpha():
            continue
        if not all(unicodedata.name(ch, "").startswith(script) for ch in letters):
            continue
        if script == "GREEK":  # wordfreq folds final sigma; write it as Greek spells it
            letters = letters[:-1] + "ς" if letters.endswith("σ") else letters
        words.append(letters)
        if len(words) == size:
            break
    return words


def speak(text: str, voice: str, variant: str, speed: int, pitch: int, tmp: Path) -> np.ndarray:
    """espeak-ng speech of ``text`` as a 16 kHz float32 waveform, leading/trailing silence cut."""
    wav = tmp / "utterance.wav"
    subprocess.run(
        ["espeak-ng", "-v", f"{voice}+{variant}", "-s", str(speed), "-p", str(pitch),
         "-w", str(wav), text],
        check=True,
        capture_output=True,
    )  # fmt: skip
    waveform = load_audio(wav)
    loud = np.flatnonzero(np.abs(waveform) > 0.01)
    start, end = max(0, loud[0] - 800), min(len(waveform), loud[-1] + 800)
    return waveform[start:end]


def build(out: Path, per_voice_train: int, per_voice_eval: int, seed: int) -> None:
    rng = random.Random(seed)
    rows: dict[str, list[tuple[str, str, str]]] = {"train": [], "eval": []}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for lang, (wf_code, voice, script) in LANGUAGES.items():
            pool = word_pool(wf_code, script, VOCAB_WORDS)
            for split, voices, count in (
                ("train", TRAIN_VOICES, per_voice_train),
                ("eval", EVAL_VOICES, per_voice_eval),
            ):
                folder = out / lang / split
                folder.mkdir(parents=True, exist_ok=True)
                index = 0
                for variant, speed, pitch in voices:
                    for _ in range(count):
                        text = " ".join(rng.sample(pool, rng.randint(1, 3)))
                        waveform = speak(text, voice, variant, speed, pitch, tmp)
                        path = folder / f"{index:05d}.wav"
                        soundfile.write(path, waveform, 16000, subtype="PCM_16")
                        rows[split].append((str(path.relative_to(out)), text, lang))
                        index += 1
            print(f"{lang}: {len(pool)} words, done", flush=True)
    for split, split_rows in rows.items():
        with open(out / f"{split}.tsv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(["audio", "text", "lang"])
            writer.writerows(split_rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/work/demo-data/corpus"))
    parser.add_argument("--train-per-voice", type=int, default=100)
    parser.add_argument("--eval-per-voice", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build(args.out, args.train_per_voice, args.eval_per_voice, args.seed)


if __name__ == "__main__":
    main()
