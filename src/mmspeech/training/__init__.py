"""Training: adapter fine-tuning, CTC, language ID and encoder-decoder models on your own data.

Needs the ``train`` extra (``pip install 'mmspeech[train]'``) for CER/WER (jiwer).

    from mmspeech.training import TrainOptions, load_waveforms, read_manifest, train_adapter
    data = load_waveforms(read_manifest("recordings.tsv"))
    train_adapter("my-mms-checkpoint", "xyz", data, options=TrainOptions(max_steps=500))
"""

from __future__ import annotations

from mmspeech.training.augment import Augmentation
from mmspeech.training.data import (
    Utterance,
    from_hf_dataset,
    load_waveforms,
    read_manifest,
    split_heldout,
)
from mmspeech.training.loop import Progress, Task, Trainer, TrainOptions, native_bf16, resolve_bf16
from mmspeech.training.recipes import (
    TrainResult,
    build_lid_model,
    init_weights,
    prepare_adapter_model,
    train_adapter,
    train_ctc,
    train_lid,
)
from mmspeech.training.tasks import ClassificationTask, CTCTask, Seq2SeqTask, error_rates
from mmspeech.training.vocab import build_vocab, encode

__all__ = [
    "Augmentation",
    "CTCTask",
    "ClassificationTask",
    "Progress",
    "Seq2SeqTask",
    "Task",
    "TrainOptions",
    "TrainResult",
    "Trainer",
    "Utterance",
    "build_lid_model",
    "build_vocab",
    "encode",
    "error_rates",
    "from_hf_dataset",
    "init_weights",
    "load_waveforms",
    "native_bf16",
    "prepare_adapter_model",
    "read_manifest",
    "resolve_bf16",
    "split_heldout",
    "train_adapter",
    "train_ctc",
    "train_lid",
]
