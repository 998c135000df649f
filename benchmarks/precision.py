"""Accuracy of each compute type against float32 of the same checkpoint, on real predictions.

- **ASR and LID** (the bundled demo checkpoints, trained on espeak-ng speech): greedy CER per
  language and LID accuracy on the held-out split of ``scripts/demo/build_corpus.py`` (voices
  and speeds training never heard). Build it first (espeak-ng and wordfreq needed)::

      python scripts/demo/build_corpus.py --out /work/demo-data/corpus --train-per-lang 0

- **VITS** (the full MMS-TTS architecture, random weights, noise scales at 0): the
  log-mel-spectrogram distance (dB, mean absolute) and the signal-to-error ratio of the
  waveform against float32, for a 100-character sentence.
- **Speech encoder-decoder** (wav2vec2-base + BERT-base architecture, random weights): the
  share of greedy token ids identical to float32's over 32 forced tokens, and the logit cosine
  of the first step.

The 1B CTC architecture's logit cosine and argmax agreement per compute type are in
``benchmarks/compute_types.py``'s report.

    python benchmarks/precision.py [--corpus DIR] [--types int8,bfloat16,int8_bfloat16]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmspeech import Wav2Vec2ForCTC, Wav2Vec2ForSequenceClassification, Wav2Vec2Processor
from mmspeech.demo import demo_checkpoint
from mmspeech.training import error_rates, load_waveforms, read_manifest
from mmspeech.training.vocab import normalize_text

FLOAT = "float32"


def demo_scores(corpus: Path, compute_type: str) -> dict[str, Any]:
    """Greedy CER per language and LID accuracy of the demo checkpoints in ``compute_type``."""
    heldout = load_waveforms(read_manifest(corpus / "eval.tsv"))
    groups: dict[str, list[Any]] = defaultdict(list)
    for utterance in heldout:
        groups[str(utterance.label)].append(utterance)
    processor = Wav2Vec2Processor.from_pretrained(demo_checkpoint("asr"))
    model = Wav2Vec2ForCTC.from_pretrained(demo_checkpoint("asr"), compute_type=compute_type)
    cer = {}
    for lang, utterances in sorted(groups.items()):
        processor.tokenizer.set_target_lang(lang)
        model.load_adapter(lang)
        references, hypotheses = [], []
        for utterance in utterances:
            values = processor(utterance.waveform, sampling_rate=16000, return_tensors="pt")
            with torch.inference_mode():
                logits = model(values["input_values"].to(model.dtype)).logits[0]
            hypotheses.append(processor.decode(logits.argmax(-1)))
            references.append(normalize_text(utterance.text))
        cer[lang] = error_rates(references, hypotheses)["cer"]
    lid = Wav2Vec2ForSequenceClassification.from_pretrained(
        demo_checkpoint("lid"), compute_type=compute_type
    )
    labels = lid.config.id2label
    hits = []
    for utterance in heldout:
        waveform: Any = utterance.waveform
        values = processor.feature_extractor(waveform, sampling_rate=16000, return_tensors="pt")
        with torch.inference_mode():
            guess = labels[int(lid(values["input_values"].to(lid.dtype)).logits.argmax(-1)[0])]
        hits.append(guess == utterance.label)
    return {"cer": cer, "lid_accuracy": float(np.mean(hits)), "utterances": len(heldout)}


def vits_distance(compute_type: str, work: Path) -> dict[str, float]:
    """Log-mel distance (dB) and waveform signal-to-error ratio (dB) against float32."""
    from mmspeech.models.vits import VitsConfig, VitsModel

    directory = work / "vits"
    if not (directory / "config.json").exists():
        torch.manual_seed(0)
        VitsModel(VitsConfig(noise_scale=0.0, noise_scale_duration=0.0)).save_pretrained(directory)
    ids = torch.randint(1, 38, (1, 201), generator=torch.Generator().manual_seed(0))
    waves = []
    for kind in (FLOAT, compute_type):
        model = VitsModel.from_pretrained(directory, compute_type=kind)
        with torch.inference_mode():
            waves.append(model(ids).waveform[0].float())
        rate = model.config.sampling_rate
    reference, reduced = waves
    lengths = {
        "seconds": reduced.numel() / rate,
        "float32_seconds": reference.numel() / rate,
    }
    if reference.shape != reduced.shape:
        # a duration rounded the other way: one token's frames more or fewer, and every later
        # sample shifted, so a sample-wise or frame-wise distance would measure the shift.
        # Reported as what it is: no distance, the lengths.
        return {**lengths, "same_length": 0.0}
    error = (reference - reduced).pow(2).mean()
    ser = 10 * torch.log10(reference.pow(2).mean() / error.clamp(min=1e-20))
    mels = [_log_mel(w) for w in waves]
    return {**lengths, "mel_db": float((mels[0] - mels[1]).abs().mean()), "ser_db": float(ser),
            "same_length": 1.0}  # fmt: skip


def _log_mel(waveform: torch.Tensor) -> torch.Tensor:
    spectrum = torch.stft(waveform, 1024, 256, window=torch.hann_window(1024), return_complex=True)
    power = spectrum.abs().pow(2)  # (513, T)
    edges = torch.linspace(0, 513, 81).long()  # 80 bands, linear spacing: a coarse mel stand-in
    bands = torch.stack([power[a:b].sum(0) for a, b in itertools.pairwise(edges.tolist())])
    return 10 * torch.log10(bands.clamp(min=1e-10))


def seq2seq_agreement(compute_type: str, work: Path) -> dict[str, float]:
    """Greedy id agreement and first-step logit cosine against float32 (random weights)."""
    from mmspeech.models.speech_encoder_decoder import (
        SpeechEncoderDecoderConfig,
        SpeechEncoderDecoderModel,
    )
    from mmspeech.models.text_decoders import BertConfig
    from mmspeech.models.wav2vec2 import Wav2Vec2Config

    directory = work / "s2t"
    if not (directory / "config.json").exists():
        config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
            Wav2Vec2Config(), BertConfig(), decoder_start_token_id=101, pad_token_id=0,
            eos_token_id=102,
        )  # fmt: skip
        torch.manual_seed(0)
        SpeechEncoderDecoderModel(config).save_pretrained(directory)
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal(80000, dtype=np.float32))
    outputs = []
    for kind in (FLOAT, compute_type):
        model = SpeechEncoderDecoderModel.from_pretrained(directory, compute_type=kind)
        values = wave[None].to(model.dtype)
        with torch.inference_mode():
            ids = model.generate(values, max_new_tokens=32, min_new_tokens=32)
            logits = model(values, decoder_input_ids=ids[:, :1]).logits[0, 0].float()
        outputs.append((ids[0], logits))
    (ids_a, logits_a), (ids_b, logits_b) = outputs
    agree = float((ids_a == ids_b).float().mean())
    cosine = float(torch.nn.functional.cosine_similarity(logits_a, logits_b, 0))
    return {"greedy_id_agreement": agree, "first_step_cosine": cosine}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("/work/demo-data/corpus"))
    parser.add_argument("--types", default="int8,bfloat16,int8_bfloat16")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/mmspeech-precision"))
    parser.add_argument("--out-json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    types = [t for t in args.types.split(",") if t]
    report: dict[str, Any] = {"demo": {}, "vits": {}, "seq2seq": {}}
    if (args.corpus / "eval.tsv").exists():
        for kind in [FLOAT, *types]:
            report["demo"][kind] = demo_scores(args.corpus, kind)
            print(kind, json.dumps(report["demo"][kind]), file=sys.stderr, flush=True)
    else:
        print(f"no held-out corpus at {args.corpus}: demo CER skipped", file=sys.stderr)
    for kind in types:
        report["vits"][kind] = vits_distance(kind, args.work)
        report["seq2seq"][kind] = seq2seq_agreement(kind, args.work)
        print(kind, report["vits"][kind], report["seq2seq"][kind], file=sys.stderr, flush=True)
    if report["demo"]:
        base = report["demo"][FLOAT]
        languages = sorted(base["cer"])
        print("| compute type | " + " | ".join(languages) + " | LID accuracy |")
        print("|---" * (len(languages) + 2) + "|")
        for kind, scores in report["demo"].items():
            cells = []
            for lang in languages:
                delta = 100 * (scores["cer"][lang] - base["cer"][lang])
                change = "" if kind == FLOAT else f" ({delta:+.1f})"
                cells.append(f"{100 * scores['cer'][lang]:.1f}{change}")
            lid = 100 * scores["lid_accuracy"]
            lid_delta = lid - 100 * base["lid_accuracy"]
            lid_cell = f"{lid:.1f}" + ("" if kind == FLOAT else f" ({lid_delta:+.1f})")
            print(f"| {kind} | " + " | ".join(cells) + f" | {lid_cell} |")
    print("\n| compute type | VITS log-mel distance (dB) | VITS waveform SER (dB) "
          "| encoder-decoder greedy ids equal | first-step logit cosine |")  # fmt: skip
    print("|---|---|---|---|---|")
    for kind in types:
        vits, s2t = report["vits"][kind], report["seq2seq"][kind]
        if vits["same_length"]:
            distances = f"{vits['mel_db']:.3f} | {vits['ser_db']:.1f}"
        else:  # no distance between waveforms of different lengths
            distances = (f"length differs: {vits['seconds']:.3f} s against "
                         f"{vits['float32_seconds']:.3f} s | –")  # fmt: skip
        print(f"| {kind} | {distances} "
              f"| {100 * s2t['greedy_id_agreement']:.0f} % "
              f"| {s2t['first_step_cosine']:.5f} |")  # fmt: skip
    if args.out_json:
        args.out_json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
