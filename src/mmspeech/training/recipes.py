"""The trainers: adapter fine-tuning, full CTC training, language ID, encoder-decoder.

Each prepares a model (what to freeze, which head to create), runs the shared
:class:`~mmspeech.training.loop.Trainer` and writes files the reference library loads.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mmspeech.checkpoints.adapters import save_adapter
from mmspeech.errors import ConfigError, DatasetError
from mmspeech.models.wav2vec2 import (
    Wav2Vec2Config,
    Wav2Vec2ForCTC,
    Wav2Vec2ForSequenceClassification,
    Wav2Vec2Model,
)
from mmspeech.training.data import Utterance
from mmspeech.training.loop import Callback, Trainer, TrainOptions
from mmspeech.training.tasks import ClassificationTask, CTCTask, check_ctc_lengths
from mmspeech.training.vocab import (
    build_vocab,
    checkpoint_mode,
    restrict_head,
    write_language_vocab,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What a trainer produced."""

    output: Path  # the checkpoint directory written (or updated)
    metrics: dict[str, float]  # held-out numbers at the end ({} without a held-out split)
    steps: int  # optimizer steps run in all
    final_loss: float  # mean loss of the last step


def init_weights(model: nn.Module, std: float = 0.02, seed: int = 0) -> None:
    """Seeded initialisation of a new model: normal(0, std) linears, Kaiming convs, unit norms
    and a uniform SpecAugment mask vector."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * std)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.Conv1d):
                fan_in = module.in_channels // module.groups * module.kernel_size[0]
                scale = (2.0 / fan_in) ** 0.5
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * scale)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.LayerNorm | nn.GroupNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        for name, parameter in model.named_parameters():
            if name.endswith("masked_spec_embed"):  # SpecAugment's mask vector: uniform [0, 1)
                parameter.copy_(torch.rand(parameter.shape, generator=generator))


def _write_processor(directory: Path, vocab: Mapping[str, object], target_lang: str | None) -> None:
    from mmspeech.processing.ctc_tokenizer import Wav2Vec2CTCTokenizer
    from mmspeech.processing.feature_extraction import Wav2Vec2FeatureExtractor

    Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(directory)
    Wav2Vec2CTCTokenizer(dict(vocab), target_lang=target_lang).save_pretrained(directory)


def _run(
    trainer: Trainer, resume: bool, callback: Callback | None
) -> tuple[dict[str, float], float]:
    history = trainer.train(resume=resume, callback=callback)
    metrics = next((p.metrics for p in reversed(history) if p.metrics), None) or {}
    return metrics, history[-1].loss if history else float("nan")


def train_ctc(
    model: Wav2Vec2ForCTC,
    vocab: Mapping[str, int],
    train: Sequence[Utterance],
    heldout: Sequence[Utterance],
    output_dir: str | Path,
    options: TrainOptions | None = None,
    *,
    freeze_feature_encoder: bool = False,
    allow_empty_text: bool = False,
    work_dir: str | Path | None = None,
    resume: bool = False,
    callback: Callback | None = None,
) -> TrainResult:
    """Train every weight of a CTC model (the conv feature encoder optionally frozen) and save
    it with a flat ``vocab.json`` and processor files in ``output_dir``.

    With ``allow_empty_text`` an utterance with an empty transcript (noise, silence) trains
    the model to write nothing there: all blanks; without it such an utterance is an error.
    """
    options = options or TrainOptions.for_ctc()
    if model.lm_head.out_features != len(vocab):
        raise ConfigError(
            f"The model's head has {model.lm_head.out_features} outputs, the vocabulary "
            f"{len(vocab)} tokens: build the model with vocab_size={len(vocab)}."
        )
    if freeze_feature_encoder:
        model.freeze_feature_encoder()
    train = check_ctc_lengths(model, train, vocab, allow_empty=allow_empty_text)
    task = CTCTask(vocab, allow_empty=allow_empty_text)
    trainer = Trainer(model, task, train, heldout, options, work_dir)
    metrics, loss = _run(trainer, resume, callback)
    out = Path(output_dir)
    model.save_pretrained(out)
    _write_processor(out, vocab, None)
    return TrainResult(out, metrics, trainer.step, loss)


def prepare_adapter_model(
    checkpoint: str | Path,
    vocab: Mapping[str, int],
    *,
    head_init: tuple[torch.Tensor, torch.Tensor, Mapping[str, int]] | None = None,
    reset_adapter: bool = False,
    seed: int = 0,
) -> Wav2Vec2ForCTC:
    """Load an MMS-style checkpoint, freeze its base, and give it a new ``lm_head`` over
    ``vocab``; only the adapter layers and that head train.

    Args:
        head_init: (weight, bias, vocab) of a trained head to copy shared tokens' rows from.
        reset_adapter: start the adapters from zero output instead of the checkpoint's.
    """
    model = Wav2Vec2ForCTC.from_pretrained(checkpoint)
    if model.config.adapter_attn_dim is None:
        raise ConfigError(
            f"{checkpoint} has no language adapters (adapter_attn_dim is not set): train the "
            "whole model with train-ctc instead."
        )
    model.freeze_base_model()
    generator = torch.Generator().manual_seed(seed)
    for adapter in model.base.adapter_layers():
        for param in adapter.parameters():
            param.requires_grad = True
        if reset_adapter:
            with torch.no_grad():
                adapter.linear_2.weight.zero_()
                adapter.linear_2.bias.zero_()
    width = model.lm_head.in_features
    head = nn.Linear(width, len(vocab))
    with torch.no_grad():
        if head_init is not None:
            weight, bias = restrict_head(*head_init, target=vocab)
            head.weight.copy_(weight)
            head.bias.copy_(bias)
        else:
            std = model.config.initializer_range
            head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * std)
            head.bias.zero_()
    model.lm_head = head
    model.config.vocab_size = len(vocab)
    return model


def train_adapter(
    checkpoint: str | Path,
    lang: str,
    train: Sequence[Utterance],
    heldout: Sequence[Utterance] = (),
    options: TrainOptions | None = None,
    *,
    vocab: Mapping[str, int] | None = None,
    head_init: tuple[torch.Tensor, torch.Tensor, Mapping[str, int]] | None = None,
    reset_adapter: bool = False,
    allow_empty_text: bool = False,
    work_dir: str | Path | None = None,
    resume: bool = False,
    callback: Callback | None = None,
) -> TrainResult:
    """Fine-tune a language adapter + head on a frozen MMS base, then write
    ``adapter.<lang>.safetensors`` into ``checkpoint`` and add ``lang`` to its nested
    ``vocab.json``: afterwards ``model.load_adapter(lang)`` works (also in the reference).

    Args:
        checkpoint: a local MMS-style checkpoint directory (it is updated in place).
        lang: the language code to write (e.g. ``"fra"``).
        vocab: the character vocabulary; built from the transcripts when None.
        allow_empty_text: train utterances with an empty transcript (noise, silence) toward
            all-blank output, as in :func:`train_ctc`; else they are an error.
    """
    options = options or TrainOptions.for_adapter()
    directory = Path(checkpoint)
    if not directory.is_dir():
        raise DatasetError(
            f"train_adapter writes into a local checkpoint directory; {directory} is not one."
        )
    vocab = dict(vocab or build_vocab(u.text for u in [*train, *heldout]))
    torch.manual_seed(options.seed)
    model = prepare_adapter_model(
        directory, vocab, head_init=head_init, reset_adapter=reset_adapter, seed=options.seed
    )
    train = check_ctc_lengths(model, train, vocab, allow_empty=allow_empty_text)
    task = CTCTask(vocab, allow_empty=allow_empty_text)
    trainer = Trainer(model, task, train, heldout, options, work_dir)
    metrics, loss = _run(trainer, resume, callback)
    _replace_adapter(model, directory, lang)
    write_language_vocab(directory, lang, vocab)
    from mmspeech.processing.ctc_tokenizer import Wav2Vec2CTCTokenizer
    from mmspeech.training.vocab import read_nested_vocab

    if not (directory / "tokenizer_config.json").is_file():
        Wav2Vec2CTCTokenizer(read_nested_vocab(directory), target_lang=lang).save_pretrained(
            directory
        )
    if not (directory / "preprocessor_config.json").is_file():
        from mmspeech.processing.feature_extraction import Wav2Vec2FeatureExtractor

        Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(directory)
    logger.info("Adapter %s written to %s: %s", lang, directory, metrics)
    return TrainResult(directory, metrics, trainer.step, loss)


def _replace_adapter(model: Wav2Vec2ForCTC, directory: Path, lang: str) -> Path:
    """The adapter file written into the checkpoint (atomically, as every safetensors write)
    with the permissions of the checkpoint's files."""
    return save_adapter(model, directory, lang, checkpoint_mode(directory))


def build_lid_model(
    encoder_ref: str | Path | Wav2Vec2Model,
    labels: Sequence[str],
    *,
    weighted_layers: bool = False,
    seed: int = 0,
) -> Wav2Vec2ForSequenceClassification:
    """A language-ID model over ``labels`` whose encoder comes from ``encoder_ref`` (a bare,
    CTC or classification checkpoint, or a loaded encoder); the head is new.

    With ``weighted_layers`` the head pools a learned mix of every layer's states
    (``use_weighted_layer_sum``), which helps when the encoder was trained for another task.
    """
    encoder = (
        encoder_ref
        if isinstance(encoder_ref, Wav2Vec2Model)
        else Wav2Vec2Model.from_pretrained(encoder_ref)
    )
    if len(set(labels)) != len(labels) or len(labels) < 2:
        raise DatasetError(f"LID needs at least two distinct labels, got {list(labels)}.")
    config: Wav2Vec2Config = encoder.config.replace(
        id2label=dict(enumerate(labels)), use_weighted_layer_sum=weighted_layers, extra={}
    )
    model = Wav2Vec2ForSequenceClassification(config)
    init_weights(model, config.initializer_range, seed)
    model.base.load_state_dict(encoder.state_dict())
    return model


def train_lid(
    model: Wav2Vec2ForSequenceClassification,
    train: Sequence[Utterance],
    heldout: Sequence[Utterance],
    output_dir: str | Path,
    options: TrainOptions | None = None,
    *,
    freeze_base: bool = True,
    work_dir: str | Path | None = None,
    resume: bool = False,
    callback: Callback | None = None,
) -> TrainResult:
    """Train a classification head (and the encoder unless ``freeze_base``) on labelled
    utterances; saves the model with ``id2label`` and a feature-extractor config."""
    options = options or TrainOptions.for_lid()
    if model.config.id2label is None:
        raise ConfigError("The LID model needs config.id2label (class index -> language code).")
    if freeze_base:
        model.freeze_base_model()
    task = ClassificationTask(model.config.label2id)
    trainer = Trainer(model, task, train, heldout, options, work_dir)
    metrics, loss = _run(trainer, resume, callback)
    out = Path(output_dir)
    model.save_pretrained(out)
    from mmspeech.processing.feature_extraction import Wav2Vec2FeatureExtractor

    Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(out)
    return TrainResult(out, metrics, trainer.step, loss)
