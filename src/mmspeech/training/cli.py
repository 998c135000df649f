"""``mmspeech train-adapter | train-ctc | train-lid | train-seq2seq``: training from the shell.

``register(subparsers)`` adds the commands; each sets ``run`` to a function returning the exit
code. Progress goes to stderr (a bar when it is a terminal), results to stdout as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mmspeech.cli import common
from mmspeech.errors import MmspeechError

logger = logging.getLogger(__name__)

ADAPTER_EXAMPLES = """examples:
  # a new language on an MMS checkpoint: writes adapter.xyz.safetensors + vocab.json entry
  mmspeech train-adapter ./mms-1b-all --lang xyz --train recordings.tsv --steps 500
  # a folder of clips with same-name .txt transcripts, 10% held out for CER/WER
  mmspeech train-adapter ./my-mms --lang fra --train clips/ --eval-fraction 0.1
  # continue an interrupted run exactly where it stopped
  mmspeech train-adapter ./my-mms --lang fra --train clips/ --work-dir runs/fra --resume
"""
CTC_EXAMPLES = """examples:
  # fine-tune a pretrained encoder (e.g. mms-300m) for CTC over the transcripts' characters
  mmspeech train-ctc --from ./mms-300m --train train.tsv --eval dev.tsv --out ./my-asr
  mmspeech train-ctc --from ./mms-300m --train data.jsonl --freeze-feature-encoder --bf16 \
      --out ./my-asr
"""
LID_EXAMPLES = """examples:
  # a language-ID head over the languages of the manifest's 'lang' column (encoder frozen)
  mmspeech train-lid --from ./mms-300m --train labelled.tsv --eval-fraction 0.1 --out ./my-lid
  mmspeech train-lid --from ./my-asr --train labelled.csv --unfreeze-encoder --out ./my-lid
"""
SEQ2SEQ_EXAMPLES = """examples:
  # fine-tune a speech encoder-decoder checkpoint (its tokenizer.json encodes the targets)
  mmspeech train-seq2seq --from ./w2v2-bart --train pairs.tsv --eval-fraction 0.05 --out ./my-s2t
"""


def _add_common(parser: argparse.ArgumentParser, recipe: str) -> None:
    """The data and training flags, with ``recipe``'s defaults (``TrainOptions.for_recipe``)."""
    from mmspeech.training.loop import TrainOptions

    defaults = TrainOptions.for_recipe(recipe)
    parser.set_defaults(recipe=recipe)
    data = parser.add_argument_group("data")
    data.add_argument("--train", required=True, type=Path,
                      help="manifest (.csv/.tsv/.jsonl: audio + text columns) or folder of "
                      "audio files with same-name .txt transcripts")  # fmt: skip
    data.add_argument("--eval", type=Path, help="held-out manifest for CER/WER or accuracy")
    data.add_argument("--eval-fraction", type=common.fraction, default=0.0,
                      help="hold out this fraction of --train instead (default: none)")  # fmt: skip
    run = parser.add_argument_group("training")
    run.add_argument("--steps", type=common.positive_int, default=defaults.max_steps,
                     help=f"optimizer steps (default {defaults.max_steps})")  # fmt: skip
    run.add_argument("--lr", type=common.positive_float, default=defaults.learning_rate,
                     help=f"peak learning rate (default {defaults.learning_rate:g})")  # fmt: skip
    run.add_argument("--warmup", type=common.non_negative_int, default=defaults.warmup_steps,
                     help=f"warm-up steps (default {defaults.warmup_steps})")  # fmt: skip
    run.add_argument("--batch-seconds", type=common.positive_float, default=defaults.batch_seconds,
                     help="seconds of audio per batch, padding included "
                     f"(default {defaults.batch_seconds:g})")  # fmt: skip
    run.add_argument("--grad-accum", type=common.positive_int, default=defaults.grad_accumulation,
                     help="batches per optimizer step")  # fmt: skip
    run.add_argument(
        "--weight-decay", type=common.non_negative_float, default=defaults.weight_decay
    )
    precision = run.add_mutually_exclusive_group()
    precision.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    precision.add_argument("--bf16-auto", action="store_true",
                           help="bfloat16 autocast only where the device computes it "
                           "natively (CPUs with AVX512-BF16 or AMX, CUDA 8.0+)")  # fmt: skip
    run.add_argument("--augment", action="store_true",
                     help="vary each training waveform: speed 0.9-1.1, gain, noise")  # fmt: skip
    run.add_argument("--seed", type=int, default=defaults.seed)
    run.add_argument("--eval-every", type=common.non_negative_int, default=defaults.eval_every,
                     help="evaluate every N steps (default: only at the end)")  # fmt: skip
    run.add_argument("--device", default=defaults.device, help="torch device (cpu, cuda, …)")
    common.add_threads(run)
    run.add_argument("--work-dir", type=Path,
                     help="where resumable checkpoints go (default: none are written)")  # fmt: skip
    run.add_argument("--checkpoint-every", type=common.non_negative_int,
                     default=defaults.checkpoint_every,
                     help="steps between resumable checkpoints in --work-dir "
                     f"(default {defaults.checkpoint_every})")  # fmt: skip
    run.add_argument("--resume", action="store_true", help="continue from --work-dir")


def _add_allow_empty_text(parser: argparse.ArgumentParser) -> None:
    """The CTC commands' opt-in to non-speech clips (empty transcripts)."""
    parser.add_argument("--allow-empty-text", action="store_true",
                        help="rows with an empty text are non-speech (noise, silence): train "
                        "the model to write nothing for them (default: an error)")  # fmt: skip


def _options(args: argparse.Namespace) -> Any:
    """The flags as the recipe's TrainOptions."""
    from mmspeech.training.augment import Augmentation
    from mmspeech.training.loop import TrainOptions

    return TrainOptions.for_recipe(
        args.recipe, max_steps=args.steps, learning_rate=args.lr,
        warmup_steps=min(args.warmup, args.steps), weight_decay=args.weight_decay,
        batch_seconds=args.batch_seconds, grad_accumulation=args.grad_accum, bf16=_bf16(args),
        seed=args.seed, eval_every=args.eval_every, checkpoint_every=args.checkpoint_every,
        device=args.device, augment=Augmentation() if args.augment else None,
    )  # fmt: skip


def _bf16(args: argparse.Namespace) -> bool:
    from mmspeech.training.loop import resolve_bf16

    mode = "auto" if args.bf16_auto else "on" if args.bf16 else "off"
    return resolve_bf16(mode, args.device)


def _data(args: argparse.Namespace, require_text: bool = True) -> tuple[list[Any], list[Any]]:
    from mmspeech.training.data import load_waveforms, read_manifest, split_heldout

    allow_empty = getattr(args, "allow_empty_text", False)
    train = read_manifest(args.train, require_text=require_text, allow_empty_text=allow_empty)
    if args.eval is not None:
        heldout = read_manifest(args.eval, require_text=require_text, allow_empty_text=allow_empty)
    else:
        train, heldout = split_heldout(train, args.eval_fraction, args.seed)
    return load_waveforms(train), load_waveforms(heldout)


def _progress(args: argparse.Namespace) -> Callable[[Any], None]:
    """A progress bar on a terminal (tqdm when installed), else a line every 10 steps."""
    bar: Any = None
    if sys.stderr.isatty():
        try:
            from tqdm import tqdm

            bar = tqdm(total=args.steps, unit="step", file=sys.stderr)
        except ImportError:
            bar = None

    def report(progress: Any) -> None:
        if bar is not None:
            bar.n = progress.step
            bar.set_postfix(loss=f"{progress.loss:.3f}", **(progress.metrics or {}))
            bar.refresh()
            if progress.step == progress.max_steps:
                bar.close()
        elif progress.step % 10 == 0 or progress.metrics or progress.step == progress.max_steps:
            extra = f" {json.dumps(progress.metrics)}" if progress.metrics else ""
            print(f"step {progress.step}/{progress.max_steps} loss {progress.loss:.4f}{extra}",
                  file=sys.stderr, flush=True)  # fmt: skip

    return report


def _finish(result: Any) -> int:
    print(json.dumps({"output": str(result.output), "steps": result.steps,
                      "final_loss": result.final_loss, "metrics": result.metrics}))  # fmt: skip
    return 0


def _guard(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def guarded(args: argparse.Namespace) -> int:
        import torch

        # before torch starts its worker threads, so that they inherit it (TrainOptions)
        torch.set_flush_denormal(True)
        common.apply_threads(args)
        if not logging.getLogger().handlers:  # warnings go around the progress bar
            common.log_to_stderr(logging.WARNING)
        try:
            return run(args)
        except MmspeechError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted; rerun with --resume to continue from the last checkpoint",
                  file=sys.stderr)  # fmt: skip
            return 130

    guarded.__name__ = run.__name__
    return guarded


def run_train_adapter(args: argparse.Namespace) -> int:
    from mmspeech.training.recipes import train_adapter

    train, heldout = _data(args)
    result = train_adapter(
        args.checkpoint, args.lang, train, heldout, _options(args),
        reset_adapter=args.reset_adapter, allow_empty_text=args.allow_empty_text,
        work_dir=args.work_dir, resume=args.resume,
        callback=_progress(args),
    )  # fmt: skip
    return _finish(result)


def run_train_ctc(args: argparse.Namespace) -> int:
    from mmspeech.models.wav2vec2 import Wav2Vec2ForCTC, Wav2Vec2Model
    from mmspeech.training.recipes import init_weights, train_ctc
    from mmspeech.training.vocab import build_vocab

    train, heldout = _data(args)
    vocab = build_vocab(u.text for u in [*train, *heldout])
    encoder = Wav2Vec2Model.from_pretrained(args.source)
    config = encoder.config.replace(vocab_size=len(vocab), adapter_attn_dim=None, extra={},
                                    ctc_loss_reduction="mean", ctc_zero_infinity=True)  # fmt: skip
    model = Wav2Vec2ForCTC(config)
    init_weights(model, config.initializer_range, args.seed)
    state = {k: v for k, v in encoder.state_dict().items() if ".adapter_layer." not in k}
    model.base.load_state_dict(state)
    result = train_ctc(
        model, vocab, train, heldout, args.out, _options(args),
        freeze_feature_encoder=args.freeze_feature_encoder,
        allow_empty_text=args.allow_empty_text, work_dir=args.work_dir, resume=args.resume,
        callback=_progress(args),
    )  # fmt: skip
    return _finish(result)


def run_train_lid(args: argparse.Namespace) -> int:
    from mmspeech.errors import DatasetError
    from mmspeech.training.recipes import build_lid_model, train_lid

    train, heldout = _data(args, require_text=False)
    labels = sorted({u.label for u in train if u.label is not None})
    if any(u.label is None for u in train):
        raise DatasetError("train-lid needs a label for every utterance (a 'lang' column).")
    model = build_lid_model(args.source, labels, weighted_layers=args.weighted_layers,
                            seed=args.seed)  # fmt: skip
    result = train_lid(
        model, train, heldout, args.out, _options(args), freeze_base=not args.unfreeze_encoder,
        work_dir=args.work_dir, resume=args.resume, callback=_progress(args),
    )  # fmt: skip
    return _finish(result)


def run_train_seq2seq(args: argparse.Namespace) -> int:
    from mmspeech.models.speech_encoder_decoder import SpeechEncoderDecoderModel
    from mmspeech.training.seq2seq import text_codec, train_seq2seq

    train, heldout = _data(args)
    model = SpeechEncoderDecoderModel.from_pretrained(args.source)
    tokenize, decode = text_codec(args.source)
    result = train_seq2seq(
        model, tokenize, train, heldout, args.out, _options(args), decode=decode,
        freeze_feature_encoder=args.freeze_feature_encoder, work_dir=args.work_dir,
        resume=args.resume, callback=_progress(args),
    )  # fmt: skip
    return _finish(result)


def register(subparsers: Any) -> None:
    """Add the training commands to an ``argparse`` subparsers object."""
    formatter = argparse.RawDescriptionHelpFormatter
    adapter = subparsers.add_parser(
        "train-adapter", help="fine-tune an MMS language adapter on your recordings",
        description="Freeze an MMS checkpoint's base and train one language adapter + output "
        "head; writes adapter.<lang>.safetensors and the vocab.json entry into the checkpoint.",
        epilog=ADAPTER_EXAMPLES, formatter_class=formatter,
    )  # fmt: skip
    adapter.add_argument("checkpoint", type=Path, help="local MMS-style checkpoint directory")
    adapter.add_argument("--lang", required=True, help="language code to write, e.g. 'xyz'")
    adapter.add_argument("--reset-adapter", action="store_true",
                         help="start the adapter from zero instead of the loaded one")  # fmt: skip
    _add_common(adapter, "adapter")
    _add_allow_empty_text(adapter)
    adapter.set_defaults(run=_guard(run_train_adapter))

    ctc = subparsers.add_parser(
        "train-ctc", help="fine-tune a wav2vec 2.0 encoder for CTC speech recognition",
        description="Train every weight of a CTC model built on a pretrained encoder, over the "
        "characters of the transcripts.", epilog=CTC_EXAMPLES, formatter_class=formatter,
    )  # fmt: skip
    ctc.add_argument("--from", dest="source", required=True, help="pretrained encoder checkpoint")
    ctc.add_argument("--out", required=True, type=Path, help="output checkpoint directory")
    ctc.add_argument("--freeze-feature-encoder", action="store_true")
    _add_common(ctc, "ctc")
    _add_allow_empty_text(ctc)
    ctc.set_defaults(run=_guard(run_train_ctc))

    lid = subparsers.add_parser(
        "train-lid", help="train a language-identification head",
        description="Train a classification head (Wav2Vec2ForSequenceClassification with "
        "id2label) over the labels of the manifest's lang column.",
        epilog=LID_EXAMPLES, formatter_class=formatter,
    )  # fmt: skip
    lid.add_argument("--from", dest="source", required=True, help="encoder checkpoint")
    lid.add_argument("--out", required=True, type=Path, help="output checkpoint directory")
    lid.add_argument("--unfreeze-encoder", action="store_true", help="train the encoder too")
    lid.add_argument("--weighted-layers", action="store_true",
                     help="pool a learned mix of all layers (use_weighted_layer_sum)")  # fmt: skip
    _add_common(lid, "lid")
    lid.set_defaults(run=_guard(run_train_lid))

    seq2seq = subparsers.add_parser(
        "train-seq2seq", help="fine-tune a speech encoder-decoder model",
        description="Fine-tune a SpeechEncoderDecoderModel checkpoint on (audio, text) pairs; "
        "its tokenizer.json turns the text into targets.",
        epilog=SEQ2SEQ_EXAMPLES, formatter_class=formatter,
    )  # fmt: skip
    seq2seq.add_argument("--from", dest="source", required=True, help="encoder-decoder checkpoint")
    seq2seq.add_argument("--out", required=True, type=Path, help="output checkpoint directory")
    seq2seq.add_argument("--freeze-feature-encoder", action="store_true")
    _add_common(seq2seq, "seq2seq")
    seq2seq.set_defaults(run=_guard(run_train_seq2seq))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one training command (for ``python -m mmspeech.training.cli``)."""
    parser = argparse.ArgumentParser(prog="mmspeech")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    common.log_to_stderr(logging.INFO)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
