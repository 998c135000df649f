"""Encoder-decoder training: the shared loop with the model's own teacher-forced loss."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from mmspeech.errors import CheckpointNotFoundError, MissingDependencyError
from mmspeech.models.speech_encoder_decoder import SpeechEncoderDecoderModel
from mmspeech.training.data import Utterance
from mmspeech.training.loop import Callback, Trainer, TrainOptions
from mmspeech.training.recipes import TrainResult, _run
from mmspeech.training.tasks import Seq2SeqTask

TEXT_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "preprocessor_config.json", "generation_config.json")  # fmt: skip


def text_codec(
    checkpoint: str | Path,
) -> tuple[Callable[[str], list[int]], Callable[[list[int]], str]]:
    """(text -> target ids, ids -> text) from the checkpoint's ``tokenizer.json``.

    Targets are what the tokenizer produces, special tokens included (e.g. BART's
    ``<s> … </s>``), as the reference's fine-tuning recipe uses them.
    """
    path = Path(checkpoint) / "tokenizer.json"
    if not path.is_file():
        raise CheckpointNotFoundError(
            f"{checkpoint} has no tokenizer.json: the targets of an encoder-decoder are the "
            "decoder tokenizer's ids; save the tokenizer (tokenizers format) into the checkpoint."
        )
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise MissingDependencyError(
            "Encoder-decoder training needs the tokenizers package: pip install 'mmspeech[text]'"
        ) from exc
    tokenizer = Tokenizer.from_file(str(path))

    def tokenize(text: str) -> list[int]:
        return list(tokenizer.encode(text).ids)

    def decode(ids: list[int]) -> str:
        return str(tokenizer.decode(ids, skip_special_tokens=True)).strip()

    return tokenize, decode


def train_seq2seq(
    model: SpeechEncoderDecoderModel,
    tokenize: Callable[[str], list[int]],
    train: Sequence[Utterance],
    heldout: Sequence[Utterance],
    output_dir: str | Path,
    options: TrainOptions | None = None,
    *,
    decode: Callable[[list[int]], str] | None = None,
    freeze_feature_encoder: bool = False,
    work_dir: str | Path | None = None,
    resume: bool = False,
    callback: Callback | None = None,
) -> TrainResult:
    """Fine-tune a speech encoder-decoder on (audio, text) pairs and save it to ``output_dir``
    (with the tokenizer/processor files of the checkpoint it was loaded from, if any).

    Held-out evaluation is CER/WER of greedy generation when ``decode`` is given, else the loss.
    """
    options = options or TrainOptions.for_seq2seq()
    if freeze_feature_encoder:
        model.freeze_feature_encoder()
    task = Seq2SeqTask(tokenize, decode)
    trainer = Trainer(model, task, train, heldout, options, work_dir)
    metrics, loss = _run(trainer, resume, callback)
    out = Path(output_dir)
    model.save_pretrained(out)
    source = model.config.name_or_path
    if source and Path(source).is_dir() and Path(source).resolve() != out.resolve():
        for name in TEXT_FILES:
            if (Path(source) / name).is_file():
                shutil.copy(Path(source) / name, out / name)
    return TrainResult(out, metrics, trainer.step, loss)
