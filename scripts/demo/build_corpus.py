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

Non-speech, so the models learn what real MMS models do at pauses and on noise (blanks and word
delimiters, no letters): "pauses" clips join 2-4 such sentences, spoken by one voice, with
0.3-1.5 s of silence between them (digital zeros or a faint noise floor), some with silence
before the first and after the last (a sentence-final pause); "noise" clips are white, pink or
brown noise or mains hum (50/60 Hz and harmonics), alone or mixed, at levels from faint to loud,
with an empty transcript. Both go into ``train.tsv`` (pauses as ``<lang>/pauses/``, noise as
``<lang>/noise/``: the noise clips are shared out over the languages so that every adapter sees
some) and into their own held-out splits ``eval-pauses`` (the evaluation voices, new sentences)
and ``eval-noise`` (new noise). Their generators come after the older ones', so train, eval and
dev speech are the same as before they were added.

``--extra-train fra=6000`` adds training utterances for some languages (new word strings,
voices drawn as above) from a generator of its own, numbered after the others: everything else
stays as it was, and with ``--keep-existing`` only the new files are rendered.

Writes ``<out>/<lang>/<split>/<n>.wav`` (16 kHz mono) and ``<out>/<split>.tsv`` manifests with
the columns ``audio``, ``text``, ``lang`` (paths relative to the manifest).

    python scripts/demo/build_corpus.py --out /work/demo-data/corpus
    python scripts/demo/build_corpus.py --out /work/demo-data/corpus --extra-train fra=6000 \
        --keep-existing
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import subprocess
import tempfile
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
SAMPLE_RATE = 16000
# pauses clips: sentences per clip, silence between them and at the ends (seconds)
PAUSE_SENTENCES = (2, 4)
PAUSE_GAP_S = (0.3, 1.5)
PAUSE_EDGE_S = (0.2, 1.5)  # leading / trailing silence, when a clip has it
NOISE_KINDS = ("white", "pink", "brown", "hum", "hum+pink")
NOISE_SECONDS = (0.5, 8.0)
NOISE_RMS_DB = (-60.0, -10.0)  # level of a noise clip, dB below full scale


@dataclass(frozen=True)
class PausesClip:
    """Sentences by one voice with silences between them (and maybe before and after)."""

    path: str
    sentences: tuple[str, ...]
    lang: str
    voice: str
    variant: str
    speed: int
    pitch: int
    gaps: tuple[float, ...]  # seconds of silence after each sentence but the last
    lead: float  # seconds of silence before the first sentence
    trail: float  # seconds after the last (a sentence-final pause)
    floor_db: float | None  # noise floor under everything, dB below full scale; None: zeros
    seed: int  # of the noise floor

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


@dataclass(frozen=True)
class NoiseClip:
    """Noise only, with an empty transcript."""

    path: str
    lang: str  # the language whose adapter trains on it (any: it says nothing)
    kind: str  # one of NOISE_KINDS
    seconds: float
    rms_db: float
    seed: int


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


def colored_noise(kind: str, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise: ``white`` (flat), ``pink`` (1/f power), ``brown`` (1/f^2 power, above
    20 Hz), ``hum`` (50 or 60 Hz with a few harmonics and a little white noise)."""
    if kind == "hum":
        t = np.arange(samples) / SAMPLE_RATE
        base = rng.choice((50.0, 60.0))
        out = sum(
            rng.uniform(0.1, 1.0) / k * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 6.3))
            for k in range(1, 6)
        )
        out = np.asarray(out) + 0.02 * rng.standard_normal(samples)
    else:
        spectrum = np.fft.rfft(rng.standard_normal(samples))
        freqs = np.fft.rfftfreq(samples, 1 / SAMPLE_RATE)
        power = {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind]
        spectrum *= np.maximum(freqs, 20.0) ** (-power / 2)
        out = np.fft.irfft(spectrum, samples)
    return (out / (np.sqrt(np.mean(out**2)) + 1e-12)).astype(np.float32)


def noise_clip(clip: NoiseClip) -> np.ndarray:
    rng = np.random.default_rng(clip.seed)
    samples = int(clip.seconds * SAMPLE_RATE)
    if clip.kind == "hum+pink":
        mix = rng.uniform(0.2, 1.0)
        out = colored_noise("hum", samples, rng) + mix * colored_noise("pink", samples, rng)
        out /= np.sqrt(np.mean(out**2))
    else:
        out = colored_noise(clip.kind, samples, rng)
    return np.clip(out * 10 ** (clip.rms_db / 20), -1, 1).astype(np.float32)


def pauses_clip(clip: PausesClip, tmp: Path) -> np.ndarray:
    voice_settings = (clip.voice, clip.variant, clip.speed, clip.pitch, tmp)
    silences = (clip.lead, *clip.gaps, clip.trail)
    parts = [np.zeros(int(silences[0] * SAMPLE_RATE), np.float32)]
    for sentence, silence in zip(clip.sentences, silences[1:], strict=True):
        parts.append(speak(sentence, *voice_settings))
        parts.append(np.zeros(int(silence * SAMPLE_RATE), np.float32))
    out = np.concatenate(parts)
    if clip.floor_db is not None:
        rng = np.random.default_rng(clip.seed)
        floor = colored_noise(str(rng.choice(("white", "pink", "brown"))), len(out), rng)
        out = out + (floor * 10 ** (clip.floor_db / 20)).astype(np.float32)
    return np.clip(out, -1, 1).astype(np.float32)


def plan_pauses(
    rng: random.Random, pool: list[str], lang: str, voice: str, split: str, count: int,
    voices: list[tuple[str, int, int]] | None,
) -> list[PausesClip]:  # fmt: skip
    """``count`` pauses clips; ``voices`` (variant, speed, pitch) fixed, or None: drawn from the
    training grid per clip."""
    clips = []
    for index in range(count):
        sentences = tuple(
            " ".join(rng.sample(pool, rng.randint(1, MAX_WORDS)))
            for _ in range(rng.randint(*PAUSE_SENTENCES))
        )
        if voices is None:
            variant = rng.choice(TRAIN_VARIANTS)
            speed, pitch = rng.choice(TRAIN_SPEEDS), rng.choice(TRAIN_PITCHES)
        else:
            variant, speed, pitch = voices[index % len(voices)]
        clips.append(
            PausesClip(
                path=f"{lang}/{split}/{index:05d}.wav", sentences=sentences, lang=lang,
                voice=voice, variant=variant, speed=speed, pitch=pitch,
                gaps=tuple(round(rng.uniform(*PAUSE_GAP_S), 2) for _ in sentences[1:]),
                lead=round(rng.uniform(*PAUSE_EDGE_S), 2) if rng.random() < 0.3 else 0.0,
                trail=round(rng.uniform(*PAUSE_EDGE_S), 2) if rng.random() < 0.5 else 0.0,
                floor_db=None if rng.random() < 0.4 else round(rng.uniform(-75.0, -45.0), 1),
                seed=rng.randrange(2**31),
            )
        )  # fmt: skip
    return clips


def plan_noise(rng: random.Random, split: str, count: int) -> list[NoiseClip]:
    """``count`` noise clips, shared out over the languages in turn."""
    langs = list(LANGUAGES)
    clips = []
    for index in range(count):
        lang = langs[index % len(langs)]
        clips.append(
            NoiseClip(
                path=f"{lang}/{split}/{index:05d}.wav", lang=lang,
                kind=rng.choice(NOISE_KINDS), seconds=round(rng.uniform(*NOISE_SECONDS), 2),
                rms_db=round(rng.uniform(*NOISE_RMS_DB), 1), seed=rng.randrange(2**31),
            )
        )  # fmt: skip
    return clips


def write_manifest(out: Path, split: str, rows: list[tuple[str, str, str]]) -> None:
    with open(out / f"{split}.tsv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["audio", "text", "lang"])
        writer.writerows(rows)


def build(
    out: Path, train_per_lang: int, eval_per_voice: int, seed: int, jobs: int, distinct: bool,
    pauses_per_lang: int = 300, noise_clips: int = 600, eval_pauses_per_voice: int = 10,
    eval_noise_clips: int = 60, extra_train: dict[str, int] | None = None,
    keep_existing: bool = False,
) -> None:  # fmt: skip
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
    # non-speech: generators after the older ones, so the speech above is unchanged
    pauses_rng, eval_pauses_rng = random.Random(seed + 3), random.Random(seed + 5)
    # more training speech for some languages (--extra-train): last generator, numbered after
    # the others, so a corpus built without it is a subset of one built with it
    extra_rng, extra_train = random.Random(seed + 7), extra_train or {}
    pauses: dict[str, list[PausesClip]] = {"train": [], "eval-pauses": []}
    noise = {
        "train": plan_noise(random.Random(seed + 4), "noise", noise_clips),
        "eval-noise": plan_noise(random.Random(seed + 6), "eval-noise", eval_noise_clips),
    }
    for lang, (wf_code, voice, script) in LANGUAGES.items():
        pool = word_pool(wf_code, script, VOCAB_WORDS, voice if distinct else None, jobs)
        extra = extra_train.get(lang, 0)
        for index in range(train_per_lang + extra):
            rng = train_rng if index < train_per_lang else extra_rng
            text = " ".join(rng.sample(pool, rng.randint(1, MAX_WORDS)))
            setting = (
                rng.choice(TRAIN_VARIANTS), rng.choice(TRAIN_SPEEDS), rng.choice(TRAIN_PITCHES)
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
        pauses["train"] += plan_pauses(
            pauses_rng, pool, lang, voice, "pauses", pauses_per_lang, None
        )
        pauses["eval-pauses"] += plan_pauses(
            eval_pauses_rng, pool, lang, voice, "eval-pauses",
            eval_pauses_per_voice * len(EVAL_VOICES), EVAL_VOICES,
        )  # fmt: skip
        print(f"{lang}: {len(pool)} words", flush=True)

    def wanted(path: str) -> bool:
        """False for a file --keep-existing keeps (every file there is complete: see save)."""
        return not (keep_existing and (out / path).exists())

    def save(path: str, waveform: np.ndarray) -> None:
        # written whole under another name, then renamed: a file that exists is complete, so
        # --keep-existing can trust it after an interrupted build
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.stem + ".partial.wav")
        soundfile.write(partial, waveform, SAMPLE_RATE, subtype="PCM_16")
        os.replace(partial, target)

    def render(item: tuple[str, str, str, str, str, int, int]) -> None:
        path, text, _, voice, variant, speed, pitch = item
        if wanted(path):
            with tempfile.TemporaryDirectory() as tmp:
                save(path, speak(text, voice, variant, speed, pitch, Path(tmp)))

    def render_pauses(clip: PausesClip) -> None:
        if wanted(clip.path):
            with tempfile.TemporaryDirectory() as tmp:
                save(clip.path, pauses_clip(clip, Path(tmp)))

    def render_noise(clip: NoiseClip) -> None:
        if wanted(clip.path):
            save(clip.path, noise_clip(clip))

    out.mkdir(parents=True, exist_ok=True)  # a split may be empty (--train-per-lang 0)
    with ThreadPoolExecutor(jobs) as pool_executor:  # espeak-ng runs as a subprocess
        for split, items in plan.items():
            list(pool_executor.map(render, items))
            rows = [(path, text, lang) for path, text, lang, *_ in items]
            if split == "train":
                list(pool_executor.map(render_pauses, pauses["train"]))
                list(pool_executor.map(render_noise, noise["train"]))
                rows += [(c.path, c.text, c.lang) for c in pauses["train"]]
                rows += [(c.path, "", c.lang) for c in noise["train"]]
            print(f"{split}: {len(rows)} utterances", flush=True)
            write_manifest(out, split, rows)
        list(pool_executor.map(render_pauses, pauses["eval-pauses"]))
        write_manifest(
            out, "eval-pauses", [(c.path, c.text, c.lang) for c in pauses["eval-pauses"]]
        )
        list(pool_executor.map(render_noise, noise["eval-noise"]))
        write_manifest(out, "eval-noise", [(c.path, "", c.lang) for c in noise["eval-noise"]])
        print(f"eval-pauses: {len(pauses['eval-pauses'])}, eval-noise: "
              f"{len(noise['eval-noise'])} clips", flush=True)  # fmt: skip


def extra_counts(value: str) -> dict[str, int]:
    """``fra=6000,eng=3000`` -> {"fra": 6000, "eng": 3000}, for --extra-train."""
    counts = {}
    for item in value.split(","):
        lang, _, count = item.partition("=")
        if lang not in LANGUAGES or not count.isdigit():
            raise argparse.ArgumentTypeError(
                f"expected LANG=COUNT with LANG one of {', '.join(LANGUAGES)}, got {item!r}"
            )
        counts[lang] = int(count)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/work/demo-data/corpus"))
    parser.add_argument("--train-per-lang", type=int, default=3000)
    parser.add_argument("--eval-per-voice", type=int, default=50)
    parser.add_argument(
        "--pauses-per-lang",
        type=int,
        default=300,
        help="training clips of 2-4 sentences with silences, per language",
    )
    parser.add_argument(
        "--noise-clips",
        type=int,
        default=600,
        help="training clips of noise only (empty transcript), in all",
    )
    parser.add_argument("--eval-pauses-per-voice", type=int, default=10)
    parser.add_argument("--eval-noise-clips", type=int, default=60)
    parser.add_argument(
        "--extra-train", type=extra_counts, default={},
        help="more training utterances for these languages, e.g. fra=6000,eng=3000 (drawn "
        "after everything else, so the other utterances and splits stay as they are)",
    )  # fmt: skip
    parser.add_argument(
        "--keep-existing", action="store_true",
        help="render only the files not there yet (to add --extra-train to a corpus built "
        "with the same other options, or to finish an interrupted build)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="espeak-ng processes at once")
    parser.add_argument("--distinct-sounds", action=argparse.BooleanOptionalAction, default=True,
                        help="leave out words espeak-ng says like a more frequent one")  # fmt: skip
    args = parser.parse_args()
    build(
        args.out, args.train_per_lang, args.eval_per_voice, args.seed, args.jobs,
        args.distinct_sounds, args.pauses_per_lang, args.noise_clips,
        args.eval_pauses_per_voice, args.eval_noise_clips, args.extra_train, args.keep_existing,
    )  # fmt: skip


if __name__ == "__main__":
    main()
