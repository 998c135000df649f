"""Measure the mmspeech-demo checkpoints: CER/WER per language and language-ID accuracy.

Runs the public inference path (``Wav2Vec2Processor`` + ``Wav2Vec2ForCTC.load_adapter`` and
``Wav2Vec2ForSequenceClassification``) on the held-out split of build_corpus.py: voices and
speeds that training never used. With ``--lm`` it also decodes with a word language model:
a unigram over each language's training words (uniform, as the corpus draws them), KenLM
beam search with those words as lexicon (``mmspeech.ctc.lm.LMDecoder`` with its default
alpha 0.5, beta 1, beam 32, token_min_logp -10, chosen on the development split).

    python scripts/demo/evaluate.py --corpus /work/demo-data/corpus --json results.json [--lm]
    python scripts/demo/evaluate.py --split dev --lm   # the split to tune decoding on
    python scripts/demo/evaluate.py --split eval-pauses  # sentences with silences between
    python scripts/demo/evaluate.py --split eval-noise   # noise only: how many clips get letters

On ``eval-noise`` the numbers are the share of clips for which greedy decoding writes anything
and the letters it writes per clip (both 0 for a model that hears no speech in noise); language
ID is not measured there (noise has no language).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch

from mmspeech import Wav2Vec2ForCTC, Wav2Vec2ForSequenceClassification, Wav2Vec2Processor
from mmspeech.ctc.lm import LMDecoder
from mmspeech.processing.feature_extraction import Wav2Vec2FeatureExtractor
from mmspeech.training import error_rates, load_waveforms, read_manifest
from mmspeech.training.vocab import normalize_text

DEMO = Path(__file__).resolve().parents[2] / "src" / "mmspeech" / "demo"


def evaluate_asr(
    asr: Path, groups: dict[str, list], lm_words: dict[str, set[str]] | None = None
) -> dict[str, dict[str, float]]:
    processor = Wav2Vec2Processor.from_pretrained(asr)
    model = Wav2Vec2ForCTC.from_pretrained(asr)
    scores = {}
    for lang, utterances in sorted(groups.items()):
        processor.tokenizer.set_target_lang(lang)
        model.load_adapter(lang)
        references, hypotheses, emissions = [], [], []
        for utterance in utterances:
            inputs = processor(utterance.waveform, sampling_rate=16000, return_tensors="pt")
            with torch.no_grad():
                logits = model(inputs["input_values"]).logits[0]
            hypotheses.append(processor.decode(logits.argmax(-1)))
            references.append(normalize_text(utterance.text))
            emissions.append(logits)
        if not any(references):  # noise: what it writes where nothing is said
            letters = [len(h.replace(" ", "")) for h in hypotheses]
            scores[lang] = {
                "written": sum(n > 0 for n in letters) / len(letters),
                "letters": sum(letters) / len(letters),
                "utterances": len(utterances),
            }
            scores[lang]["example"] = f"noise -> {max(hypotheses, key=len)!r}"  # type: ignore[assignment]
            continue
        scores[lang] = {**error_rates(references, hypotheses), "utterances": len(utterances)}
        scores[lang]["example"] = f"{references[0]!r} -> {hypotheses[0]!r}"  # type: ignore[assignment]
        if lm_words is not None:
            vocab = processor.tokenizer.get_vocab()
            labels = sorted(vocab, key=vocab.__getitem__)
            # P(</s>) 0.4 after a word: the utterances have 1-4 words
            decoder = LMDecoder.from_words(labels, lm_words[lang], end_prob=0.4)
            lm_hypotheses = [decoder.decode(logits) for logits in emissions]
            scores[lang]["lm_cer"] = error_rates(references, lm_hypotheses)["cer"]
    return scores


def evaluate_lid(lid: Path, utterances: list) -> tuple[float, dict[str, float]]:
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(lid)
    model = Wav2Vec2ForSequenceClassification.from_pretrained(lid)
    labels = model.config.id2label
    hits: dict[str, list[bool]] = defaultdict(list)
    for utterance in utterances:
        inputs = extractor(utterance.waveform, sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            guess = labels[int(model(inputs["input_values"]).logits.argmax(-1)[0])]
        hits[utterance.label].append(guess == utterance.label)
    total = sum(sum(h) for h in hits.values()) / sum(len(h) for h in hits.values())
    return total, {lang: sum(h) / len(h) for lang, h in sorted(hits.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("/work/demo-data/corpus"))
    parser.add_argument("--asr", type=Path, default=DEMO / "asr")
    parser.add_argument("--lid", type=Path, default=DEMO / "lid")
    parser.add_argument(
        "--split", default="eval", choices=["eval", "dev", "eval-pauses", "eval-noise"],
        help="eval: the numbers to report; dev: the split to tune decoding settings on; "
        "eval-pauses, eval-noise: the non-speech splits",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--lm", action="store_true", help="also decode with a word unigram LM")
    args = parser.parse_args()
    heldout = load_waveforms(
        read_manifest(args.corpus / f"{args.split}.tsv", allow_empty_text=True)
    )
    groups: dict[str, list] = defaultdict(list)
    for utterance in heldout:
        groups[str(utterance.label)].append(utterance)
    lm_words: dict[str, set[str]] | None = None
    if args.lm:  # the words each language's training transcripts use
        lm_words = defaultdict(set)
        for utterance in read_manifest(args.corpus / "train.tsv", allow_empty_text=True):
            lm_words[str(utterance.label)].update(normalize_text(utterance.text).split())
    asr = evaluate_asr(args.asr, groups, lm_words)
    if args.split == "eval-noise":
        print("| language | clips | clips with letters | letters per clip |")
        print("|---|---|---|---|")
        for lang, score in asr.items():
            print(f"| {lang} | {score['utterances']} | {100 * score['written']:.0f}% | "
                  f"{score['letters']:.1f} |")  # fmt: skip
        for lang, score in asr.items():
            print(f"{lang}: {score['example']}")
        if args.json:
            args.json.write_text(json.dumps({"asr": asr}, indent=2, ensure_ascii=False) + "\n")
        return
    accuracy, per_lang = evaluate_lid(args.lid, heldout)
    lm_column = " CER with LM |" if args.lm else ""
    print(f"| language | utterances | CER | WER | LID accuracy |{lm_column}")
    print("|---|---|---|---|---|" + ("---|" if args.lm else ""))
    for lang, score in asr.items():
        lm_cell = f" {100 * score['lm_cer']:.1f}% |" if args.lm else ""
        print(f"| {lang} | {score['utterances']} | {100 * score['cer']:.1f}% | "
              f"{100 * score['wer']:.1f}% | {100 * per_lang[lang]:.1f}% |{lm_cell}")  # fmt: skip
    print(f"| all | {len(heldout)} | | | {100 * accuracy:.1f}% |" + (" |" if args.lm else ""))
    for lang, score in asr.items():
        print(f"{lang}: {score['example']}")
    if args.json:
        result = {"asr": asr, "lid": {"accuracy": accuracy, "per_language": per_lang}}
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
