"""Train the mmspeech-demo checkpoints on the espeak-ng corpus of build_corpus.py.

1. A small wav2vec 2.0 CTC model in the MMS layout (pre-norm blocks with language adapters)
   is trained on all languages at once over the union of their characters (English and French
   drawn twice as often), with speed/gain/noise augmentation of the waveforms and SpecAugment
   time masks; in bfloat16 autocast where the CPU has native bfloat16.
2. Per language, the base is frozen and an adapter + a head over that language's characters
   is fine-tuned (the head starts from the shared head's rows): ``adapter.<lang>.safetensors``
   and a nested ``vocab.json``, exactly like facebook/mms-1b-all.
3. A language-ID model (the base's encoder + a head) is fine-tuned on labelled audio, or with
   ``--lid-from`` an existing one is copied unchanged.

The corpus's non-speech clips train too: "pauses" clips (sentences with silences between them)
and "noise" clips, whose empty transcripts (``allow_empty_text``) teach the model to write
nothing there; ``--oversample`` weights them in the base's data.

    python scripts/demo/train.py --corpus /work/demo-data/corpus --out /work/demo-data/models

``--init src/mmspeech/demo/asr`` fine-tunes the shipped checkpoints instead of starting from
random weights (the base's head over all languages' characters is rebuilt from the languages'
heads); ``--deadline`` stops the base at a wall-clock time, saves it and goes on with the
adapters, and says the step it stopped at: ``--base-stop-at`` that step reproduces the run.

Resumable: rerun the same command after an interruption.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from mmspeech.models.wav2vec2 import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2Model
from mmspeech.training import (
    Augmentation,
    TrainOptions,
    build_lid_model,
    build_vocab,
    init_weights,
    load_waveforms,
    read_manifest,
    resolve_bf16,
    train_adapter,
    train_ctc,
    train_lid,
)
from mmspeech.training.vocab import read_nested_vocab

# The demo architecture: MMS structure (stable layer norm, layer-norm conv encoder, adapters),
# ~5M parameters, 50 frames per second like MMS.
DEMO_CONFIG: dict[str, Any] = {
    "hidden_size": 256,
    "num_hidden_layers": 6,
    "num_attention_heads": 4,
    "intermediate_size": 1024,
    "conv_dim": (32, 64, 96, 128, 128),
    "conv_stride": (5, 4, 4, 2, 2),
    "conv_kernel": (10, 8, 8, 4, 4),
    "conv_bias": True,
    "feat_extract_norm": "layer",
    "do_stable_layer_norm": True,
    "num_conv_pos_embeddings": 32,
    "num_conv_pos_embedding_groups": 16,
    "adapter_attn_dim": 16,
    # no dropout: augmentation and SpecAugment regularise, and CPU dropout masks cost ~28 %
    # of a training step
    "hidden_dropout": 0.0,
    "activation_dropout": 0.0,
    "attention_dropout": 0.0,
    "final_dropout": 0.0,
    "layerdrop": 0.0,
    # SpecAugment: ~8 % of frames masked in 0.1 s spans (short clips may get none)
    "mask_time_prob": 0.08,
    "mask_time_length": 5,
    "mask_time_min_masks": 0,
    "ctc_loss_reduction": "mean",
    "ctc_zero_infinity": True,
}

# English and French are the hardest to learn (spelling far from sound) and the base underfits
# them most: it sees their utterances twice as often as the others' (each copy augmented anew);
# --lang-oversample changes it
BASE_OVERSAMPLE = {"eng": 2, "fra": 2}

# every training waveform is varied as it is drawn: speed 0.9/1.0/1.1, gain, noise at 10-40 dB
AUGMENT = Augmentation()

log = logging.getLogger("demo")
UTC = timezone.utc  # (datetime.UTC needs Python 3.11)


def by_lang(utterances):
    groups = defaultdict(list)
    for utterance in utterances:
        groups[utterance.label].append(utterance)
    return dict(groups)


def is_nonspeech_clip(utterance) -> bool:
    """A pauses or noise clip of build_corpus.py (by its folder)."""
    return Path(utterance.audio).parent.name in ("pauses", "noise")


def progress_printer(stage: str, deadline: datetime | None = None, stop_at: int = 0):
    """Prints progress; returns True (stop, after a checkpoint) at ``deadline`` or ``stop_at``."""
    started = time.time()

    def report(progress):
        if progress.step % 25 == 0 or progress.metrics:
            print(
                f"[{stage}] step {progress.step}/{progress.max_steps} loss {progress.loss:.3f} "
                f"lr {progress.learning_rate:.2e} {time.time() - started:.0f}s"
                + (f" {progress.metrics}" if progress.metrics else ""),
                flush=True,
            )
        late = deadline is not None and datetime.now(UTC) >= deadline
        if late or progress.step == stop_at:
            why = f"deadline {deadline:%H:%M:%S} UTC" if late else f"--base-stop-at {stop_at}"
            print(f"[{stage}] stopped at step {progress.step} ({why}): to reproduce, rerun "
                  f"with --base-stop-at {progress.step}", flush=True)  # fmt: skip
            return True
        return False

    return report


def parse_deadline(text: str) -> datetime:
    """``HH:MM`` (today, UTC) or an ISO 8601 time (UTC unless it says otherwise)."""
    if len(text) <= 5 and ":" in text:
        hours, minutes = (int(part) for part in text.split(":"))
        return datetime.now(UTC).replace(hour=hours, minute=minutes, second=0, microsecond=0)
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_oversample(text: str) -> dict[str, int]:
    """``eng=3,fra=4`` -> {"eng": 3, "fra": 4}."""
    try:
        pairs = [part.split("=") for part in text.split(",") if part]
        copies = {lang.strip(): int(count) for lang, count in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LANG=COPIES,..., got {text!r}") from None
    if any(count < 0 for count in copies.values()):  # range(-1) would drop the language silently
        raise argparse.ArgumentTypeError(f"copies must be 0 or more, got {text!r}")
    return copies


def base_from_checkpoint(checkpoint: Path, union: dict[str, int]) -> Wav2Vec2ForCTC:
    """A base to fine-tune from an MMS-layout checkpoint (e.g. the shipped demo ``asr/``): its
    weights (whose adapter layers are the default language's) and a head over ``union``, each
    token's row the mean of that token's rows in the languages' heads."""
    model = Wav2Vec2ForCTC.from_pretrained(checkpoint)
    rows: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = defaultdict(list)
    for lang, table in read_nested_vocab(checkpoint).items():
        tensors = load_file(checkpoint / f"adapter.{lang}.safetensors")
        weight, bias = tensors["lm_head.weight"].float(), tensors["lm_head.bias"].float()
        for token, index in table.items():
            rows[token].append((weight[index], bias[index]))
    missing = sorted(set(union) - set(rows))
    if missing:
        raise SystemExit(f"{checkpoint} has no head row for {missing}: train from scratch")
    head = torch.nn.Linear(model.lm_head.in_features, len(union))
    with torch.no_grad():
        for token, index in union.items():
            head.weight[index] = torch.stack([w for w, _ in rows[token]]).mean(0)
            head.bias[index] = torch.stack([b for _, b in rows[token]]).mean(0)
    model.lm_head = head
    model.config.vocab_size = len(union)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("/work/demo-data/corpus"))
    parser.add_argument("--out", type=Path, default=Path("/work/demo-data/models"))
    parser.add_argument("--base-steps", type=int, default=26000)
    parser.add_argument("--adapter-steps", type=int, default=300)
    parser.add_argument("--lid-steps", type=int, default=3000)
    parser.add_argument("--batch-seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--bf16",
        choices=("auto", "on", "off"),
        default="auto",
        help="bfloat16 autocast for the base; auto: where the CPU computes bfloat16 natively",
    )
    parser.add_argument("--base-lr", type=float, default=1.5e-3, help="the base's peak rate")
    parser.add_argument("--base-warmup", type=int, default=500, help="the base's warm-up steps")
    parser.add_argument("--seed", type=int, default=0, help="new weights and batch order")
    parser.add_argument("--oversample", type=int, default=1,
                        help="copies of each pauses/noise clip in the base's data")  # fmt: skip
    parser.add_argument("--lang-oversample", type=parse_oversample, default=BASE_OVERSAMPLE,
                        help="copies of each language's utterances in the base's data, e.g. "
                        "eng=3,fra=4 (others: 1; default: eng=2,fra=2)")  # fmt: skip
    parser.add_argument("--init", type=Path,
                        help="start the base from this MMS-layout ASR checkpoint (e.g. "
                        "src/mmspeech/demo/asr) instead of random weights")  # fmt: skip
    parser.add_argument("--deadline", type=parse_deadline,
                        help="stop the base at this UTC time (HH:MM or ISO 8601), save it and "
                        "go on with the adapters")  # fmt: skip
    parser.add_argument("--base-stop-at", type=int, default=0,
                        help="stop the base at this step (as a --deadline run did)")  # fmt: skip
    parser.add_argument("--freeze-feature-encoder", action="store_true",
                        help="train the base's transformer, not its conv feature encoder (for "
                        "a fine-tune with --init: steps take less time)")  # fmt: skip
    parser.add_argument("--lid-from", type=Path,
                        help="copy this LID checkpoint (e.g. src/mmspeech/demo/lid) instead of "
                        "training one")  # fmt: skip
    parser.add_argument("--limit", type=int, default=0, help="utterances per language (smoke test)")
    args = parser.parse_args()
    # denormal floats (tiny activations/gradients of a trained model) are ~100x slower on x86:
    # flushed to zero, steps took half the time. Set before torch starts its worker threads,
    # which inherit it.
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    bf16 = resolve_bf16(args.bf16)  # warns when "on" would be emulated
    print(f"bfloat16 autocast: {'on' if bf16 else 'off'}", flush=True)

    # noise clips have empty transcripts: non-speech, to learn to write nothing for
    train = read_manifest(args.corpus / "train.tsv", allow_empty_text=True)
    heldout = read_manifest(args.corpus / "eval.tsv")
    pauses_heldout = read_manifest(args.corpus / "eval-pauses.tsv")[::4]  # watched too
    if args.limit:
        train = [  # some speech and some non-speech clips of each language
            u
            for kind in (False, True)
            for group in by_lang([u for u in train if is_nonspeech_clip(u) == kind]).values()
            for u in group[: args.limit]
        ]
        pauses_heldout = pauses_heldout[:6]
        heldout = [
            u for group in by_lang(heldout).values() for u in group[: max(2, args.limit // 4)]
        ]
    train, heldout = load_waveforms(train), load_waveforms(heldout)
    pauses_heldout = load_waveforms(pauses_heldout)
    langs = sorted(by_lang(train))
    print(
        f"{len(train)} training and {len(heldout)} held-out utterances, languages {langs}",
        flush=True,
    )
    # a small held-out sample to watch the base training (the full set is for the end)
    watch = [u for group in by_lang(heldout).values() for u in group[::12]] + pauses_heldout

    # 1. the shared base, all languages, union vocabulary
    base_dir = args.out / "base"
    union = build_vocab(u.text for u in train + heldout)
    if not (base_dir / "model.safetensors").is_file():
        torch.manual_seed(args.seed)
        if args.init is not None:
            model = base_from_checkpoint(args.init, union)
            print(f"base model from {args.init}", flush=True)
        else:
            model = Wav2Vec2ForCTC(Wav2Vec2Config(**DEMO_CONFIG, vocab_size=len(union)))
            init_weights(model, seed=args.seed)
        print(f"base model: {model.num_parameters() / 1e6:.2f}M parameters", flush=True)
        options = TrainOptions(
            max_steps=args.base_steps, learning_rate=args.base_lr,
            warmup_steps=args.base_warmup, batch_seconds=args.batch_seconds, max_batch_size=64,
            weight_decay=0.01, eval_every=500, checkpoint_every=100, seed=args.seed,
            augment=AUGMENT, bf16=bf16,
        )  # fmt: skip
        base_train = [
            u
            for u in train
            for _ in range(
                args.oversample
                if is_nonspeech_clip(u)
                else args.lang_oversample.get(u.label or "", 1)
            )
        ]
        result = train_ctc(
            model, union, base_train, watch, base_dir, options, allow_empty_text=True,
            freeze_feature_encoder=args.freeze_feature_encoder, work_dir=args.out / "work-base",
            resume=True,
            callback=progress_printer("base", args.deadline, args.base_stop_at),
        )  # fmt: skip
        print(f"base done after {result.steps} steps: {result.metrics}", flush=True)

    # 2. one adapter + head per language, base frozen, written into asr/
    asr_dir = args.out / "asr"
    base = Wav2Vec2ForCTC.from_pretrained(base_dir)
    head = (base.lm_head.weight.detach().clone(), base.lm_head.bias.detach().clone(), union)
    if not (asr_dir / "model.safetensors").is_file():
        base.save_pretrained(asr_dir)
    lang_train, lang_heldout = by_lang(train), by_lang(heldout)
    scores = {}
    for lang in langs:
        if (asr_dir / f"adapter.{lang}.safetensors").is_file():
            continue
        texts = [u.text for u in lang_train[lang] + lang_heldout[lang]]
        options = TrainOptions(
            max_steps=args.adapter_steps, learning_rate=1e-3, warmup_steps=20,
            batch_seconds=args.batch_seconds, max_batch_size=64, seed=args.seed, augment=AUGMENT,
        )  # fmt: skip
        result = train_adapter(
            asr_dir, lang, lang_train[lang], lang_heldout[lang], options,
            vocab=build_vocab(texts), head_init=head, allow_empty_text=True,
            work_dir=args.out / f"work-{lang}", resume=True, callback=progress_printer(lang),
        )  # fmt: skip
        scores[lang] = result.metrics
        print(f"adapter {lang}: {result.metrics}", flush=True)
    # the base file carries the default language (eng), as mms-1b-all does
    default = Wav2Vec2ForCTC.from_pretrained(asr_dir, target_lang="eng")
    default.save_pretrained(asr_dir)
    config = json.loads((asr_dir / "tokenizer_config.json").read_text())
    config["target_lang"] = "eng"
    (asr_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))

    # 3. language ID: the base's encoder and a head, all fine-tuned
    lid_dir = args.out / "lid"
    if args.lid_from is not None and not (lid_dir / "model.safetensors").is_file():
        shutil.copytree(args.lid_from, lid_dir, dirs_exist_ok=True)
        print(f"lid: copied from {args.lid_from}", flush=True)
    if not (lid_dir / "model.safetensors").is_file():
        encoder = Wav2Vec2Model.from_pretrained(base_dir)
        lid_model = build_lid_model(encoder, langs, seed=args.seed, weighted_layers=True)
        # the whole model is fine-tuned: measured 91 % held-out accuracy against 88 % for a
        # head on the frozen encoder, for the same 800 steps; 800 steps on half the data
        # reached 93.7 %, 1,500 steps on all of it 95.8 % (on the base of the corpus with
        # homophones; 93.7 % on the next base, where 3,000 steps reached 95.5 %; 96.5 % on
        # today's 26,000-step base)
        options = TrainOptions(
            max_steps=args.lid_steps, learning_rate=5e-4, warmup_steps=50,
            batch_seconds=args.batch_seconds, max_batch_size=64, eval_every=200, seed=args.seed,
            augment=AUGMENT,
        )  # fmt: skip
        speech = [u for u in train if u.text]  # noise has no language
        result = train_lid(
            lid_model, speech, heldout, lid_dir, options, freeze_base=False,
            work_dir=args.out / "work-lid", resume=True, callback=progress_printer("lid"),
        )  # fmt: skip
        print(f"lid done: {result.metrics}", flush=True)
    print("all done", flush=True)


if __name__ == "__main__":
    main()
