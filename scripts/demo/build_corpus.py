"""Build the mmspeech-demo speech corpus: espeak-ng speech of frequent words in six languages.

Text comes from ``wordfreq`` (the most frequent words of each language, in its own script);
each utterance is 1-4 random words spoken by espeak-ng with a voice variant, speed and pitch
drawn for it (51 variants, 12 speeds, 11 pitches). Evaluation uses two variants training never
hears, at off-grid speeds and pitches, so it measures how well the models generalise to
speakers they never heard (within synthetic speech); a development split of two more unheard
variants is for choosing decoding settings. Words espeak-ng says like a more frequent
one are left out (French ``ai`` after ``et``: 95 of French's first 700, 27 of Greek's, 1-13
elsewhere), as strings of random words cannot tell homophones apart; ``--no-distinct-sounds``
keeps them (the checkpoints shipped before 2026-12-02 were trained so).

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
from concurrent.futures import ThreadPoolExecutor
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
# Training speech: every utterance draws its own espeak-ng voice variant, speed (words per
# minute, multiples of 10) and pitch (multiples of 5). Evaluation uses two variants that training
# never hears, at speeds and pitches that are not on the training grid.
TRAIN_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m8", "f1", "f2", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "croak", "Alex", "Andy", "Annie", "Denis", "Gene",
    "Jacky", "Lee", "Mario", "Michael", "Storm", "Tweaky", "adam", "anika", "aunty", "belinda",
    "benjamin", "boris", "caleb", "david", "edward", "grandma", "grandpa", "iven", "john",
    "linda", "max", "norbert", "paul", "pedro", "quincy", "rob", "robert", "steph", "travis",
    "victor",
)  # fmt: skip
TRAIN_SPEEDS = tuple(range(120, 231, 10))
TRAIN_PITCHES = tuple(range(25, 80, 5))
EVAL_VOICES = [("m7", 155, 48), ("f3", 178, 58)]  # (variant, words per minute, pitch 0-99)
# a development split, for choosing decoding settings without looking at the evaluation split:
# two more variants that neither training nor evaluation uses
DEV_VOICES = [("Mike", 165, 42), ("Andrea", 142, 52)]
MAX_WORDS = 4  # words per utterance: 1 to MAX_WORDS
# a word needs a vowel of its script: vowel-less ones are abbreviations espeak-ng expands
# ("dr" -> "doctor"), whose audio would not match their letters
VOWELS = {
    "LATIN": set("aeiouyàâäæéèêëîïôöœùûüÿáíóúñ"),
    "CYRILLIC": set("аеёиоуыэюя"),
    "GREEK": set("αεηιουωάέήίόύώϊϋΐΰ"),
}
# most frequent words per language to draw from. The models learn spelling from the speech, so
# each word is heard ~11 times per epoch (1,200 words: ~6 times, English/French held-out CER
# 26 %/34 % against 25 %/32 % with 700 and 2,000 more base steps)
VOCAB_WORDS = 700


def pronunciation(word: str, voice: str) -> str:
    """espeak-ng's phonemes of a word said on its own."""
    result = subprocess.run(
        ["espeak-ng", "-v", voice, "-q", "-x", word], check=True, capture_output=True, text=True
    )
    return " ".join(result.stdout.split())


def word_pool(
    wordfreq_code: str, script: str, size: int, voice: str | None = None, jobs: int = 2
) -> list[str]:
    """The ``size`` most frequent all-letter words of a language written in ``script``.

    With ``voice``, a word espeak-ng says like a more frequent one (French ``ai`` after ``et``)
    is left out: in strings of random words nothing tells homophones apart.
    """
    import wordfreq

    wanted = size if voice is None else 2 * size  # homophones leave room for others
    candidates = []
    for word in wordfreq.top_n_list(wordfreq_code, 20 * size):
        letters = unicodedata.normalize("NFC", word)
        if len(letters) < 2 or not letters.isalpha():
            continue
        if not all(unicodedata.name(ch, "").startswith(script) for ch in letters):
            continue
        if not VOWELS[script] & set(letters):
            continue
        if script == "GREEK":  # wordfreq folds final sigma; write it as Greek spells it
            letters = letters[:-1] + "ς" if letters.endswith("σ") else letters
        candidates.append(letters)
        if len(candidates) == wanted:
            break
    if voice is None:
        return _enough(candidates, size, wordfreq_code)
    with ThreadPoolExecutor(jobs) as executor:  # one espeak-ng process per word
        sounds = list(executor.map(lambda word: pronunciation(word, voice), candidates))
    heard: set[str] = set()
    words = []
    for word, sound in zip(candidates, sounds, strict=True):
        if sound not in heard:
            heard.add(sound)
            words.append(word)
    return _enough(words, size, wordfreq_code)


def _enough(words: list[str], size: int, wordfreq_code: str) -> list[str]:
    """The first ``size`` words, or an error naming the language when there are fewer."""
    if len(words) < size:
        raise SystemExit(
            f"wordfreq's '{wordfreq_code}' list gives only {len(words)} usable words, {size} wanted"
        )
    return words[:size]


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


def build(
    out: Path, train_per_lang: int, eval_per_voice: int, seed: int, jobs: int, distinct: bool
) -> None:
    # every utterance is decided first (one seeded generator per split), then spoken in parallel
    # (the dev generator comes last so that adding it left train and eval as they were)
    train_rng, eval_rng, dev_rng = (
        random.Random(seed),
        random.Random(seed + 1),
        random.Random(seed + 2),
    )
    plan: dict[str, list[tuple[str, str, str, str, str, int, int]]] = {
        "train": [], "eval": [], "dev": []
    }  # fmt: skip
    for lang, (wf_code, voice, script) in LANGUAGES.items():
        pool = word_pool(wf_code, script, VOCAB_WORDS, voice if distinct else None, jobs)
        for index in range(train_per_lang):
            text = " ".join(train_rng.sample(pool, train_rng.randint(1, MAX_WORDS)))
            setting = (
                train_rng.choice(TRAIN_VARIANTS), train_rng.choice(TRAIN_SPEEDS),
                train_rng.choice(TRAIN_PITCHES),
            )  # fmt: skip
            plan["train"].append((f"{lang}/train/{index:05d}.wav", text, lang, voice, *setting))
        for split, rng, voices in (("eval", eval_rng, EVAL_VOICES), ("dev", dev_rng, DEV_VOICES)):
            index = 0
            for variant, speed, pitch in voices:
                for _ in range(eval_per_voice):
                    text = " ".join(rng.sample(pool, rng.randint(1, MAX_WORDS)))
                    path = f"{lang}/{split}/{index:05d}.wav"
                    plan[split].append((path, text, lang, voice, variant, speed, pitch))
                    index += 1
        print(f"{lang}: {len(pool)} words", flush=True)

    def render(item: tuple[str, str, str, str, str, int, int]) -> None:
        path, text, _, voice, variant, speed, pitch = item
        with tempfile.TemporaryDirectory() as tmp:
            waveform = speak(text, voice, variant, speed, pitch, Path(tmp))
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(out / path, waveform, 16000, subtype="PCM_16")

    out.mkdir(parents=True, exist_ok=True)  # a split may be empty (--train-per-lang 0)
    with ThreadPoolExecutor(jobs) as pool_executor:  # espeak-ng runs as a subprocess
        for split, items in plan.items():
            list(pool_executor.map(render, items))
            print(f"{split}: {len(items)} utterances", flush=True)
            with open(out / f"{split}.tsv", "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
                writer.writerow(["audio", "text", "lang"])
                writer.writerows((path, text, lang) for path, text, lang, *_ in items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/work/demo-data/corpus"))
    parser.add_argument("--train-per-lang", type=int, default=3000)
    parser.add_argument("--eval-per-voice", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="espeak-ng processes at once")
    parser.add_argument("--distinct-sounds", action=argparse.BooleanOptionalAction, default=True,
                        help="leave out words espeak-ng says like a more frequent one")  # fmt: skip
    args = parser.parse_args()
    build(
        args.out, args.train_per_lang, args.eval_per_voice, args.seed, args.jobs,
        args.distinct_sounds,
    )  # fmt: skip


if __name__ == "__main__":
    main()
