"""Measure the mmspeech-demo checkpoints: CER/WER per language and language-ID accuracy.

Runs the public inference path (``Wav2Vec2Processor`` + ``Wav2Vec2ForCTC.load_adapter`` and
``Wav2Vec2ForSequenceClassification``) on the held-out split of build_corpus.py: voices and
speeds that training never used.

    python scripts/demo/evaluate.py --corpus /work/demo-data/corpus --json results.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch

from mmspeech import Wav2Vec2ForCTC, Wav2Vec2ForSequenceClassification, Wav2Vec2Processor
from mmspeech.processing.feature_extraction import Wav2Vec2FeatureExtractor
from mmspeech.training import error_rates, load_waveforms, read_manifest
from mmspeech.training.vocab import normalize_text

DEMO = Path(__file__).resolve().parents[2] / "src" / "mmspeech" / "demo"


def evaluate_asr(asr: Path, groups: dict[str, list]) -> dict[str, dict[str, float]]:
    processor = Wav2Vec2Processor.from_pretrained(asr)
    model = Wav2Vec2ForCTC.from_pretrained(asr)
    scores = {}
    for lang, utterances in sorted(groups.items()):
        processor.tokenizer.set_target_lang(lang)
        model.load_adapter(lang)
        references, hypotheses = [], []
        for utterance in utterances:
            inputs = processor(utterance.waveform, sampling_rate=16000, return_tensors="pt")
            with torch.no_grad():
                logits = model(inputs["input_values"]).logits
            hypotheses.append(processor.decode(logits.argmax(-1)[0]))
            references.append(normalize_text(utterance.text))
        scores[lang] = {**error_rates(references, hypotheses), "utterances": len(utterances)}
        scores[lang]["example"] = f"{references[0]!r} -> {hypotheses[0]!r}"  # type: ignore[assignment]
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
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    heldout = load_waveforms(read_manifest(args.corpus / "eval.tsv"))
    groups: dict[str, list] = defaultdict(list)
    for utterance in heldout:
        groups[utterance.label].append(utterance)
    asr = evaluate_asr(args.asr, groups)
    accuracy, per_lang = evaluate_lid(args.lid, heldout)
    print("| language | utterances | CER | WER | LID accuracy |")
    print("|---|---|---|---|---|")
    for lang, score in asr.items():
        print(f"| {lang} | {score['utterances']} | {100 * score['cer']:.1f}% | "
              f"{100 * score['wer']:.1f}% | {100 * per_lang[lang]:.1f}% |")  # fmt: skip
    print(f"| all | {len(heldout)} | | | {100 * accuracy:.1f}% |")
    for lang, score in asr.items():
        print(f"{lang}: {score['example']}")
    if args.json:
        result = {"asr": asr, "lid": {"accuracy": accuracy, "per_language": per_lang}}
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
