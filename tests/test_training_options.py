"""Training defaults have one home: ``TrainOptions.for_<recipe>()``, read by the recipes called
from Python and by the ``mmspeech train-*`` commands alike."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest

from mmspeech.cli import build_parser
from mmspeech.training import TrainOptions, loop, recipes, seq2seq
from mmspeech.training.cli import _options

# command, its required arguments, the library recipe
COMMANDS = [
    ("train-adapter", ["ckpt", "--lang", "xyz"], "adapter"),
    ("train-ctc", ["--from", "enc", "--out", "out"], "ctc"),
    ("train-lid", ["--from", "enc", "--out", "out"], "lid"),
    ("train-seq2seq", ["--from", "s2s", "--out", "out"], "seq2seq"),
]


@pytest.mark.parametrize(("command", "required", "recipe"), COMMANDS)
def test_the_cli_reads_the_recipes_defaults(command, required, recipe):
    args = build_parser().parse_args([command, *required, "--train", "data.tsv"])
    assert asdict(_options(args)) == asdict(TrainOptions.for_recipe(recipe))
    assert asdict(TrainOptions.for_recipe(recipe)) == asdict(
        getattr(TrainOptions, f"for_{recipe}")()
    )


class _Captured(Exception):
    def __init__(self, options: Any):
        self.options = options


def _capturing_trainer(model, task, train, heldout, options, work_dir):
    raise _Captured(options)


def test_python_recipes_default_to_their_recipe(monkeypatch, tmp_path):
    """train_ctc() from Python trains like `mmspeech train-ctc` (it used 1e-3 where the CLI
    used 1e-4, ten times the rate over the whole model)."""
    from mmspeech.models.wav2vec2 import Wav2Vec2Config, Wav2Vec2ForCTC

    monkeypatch.setattr(recipes, "Trainer", _capturing_trainer)
    monkeypatch.setattr(seq2seq, "Trainer", _capturing_trainer)
    monkeypatch.setattr(recipes, "check_ctc_lengths", lambda model, train, vocab, **_: train)
    config = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=8, conv_dim=(8,), conv_stride=(5,),
                            conv_kernel=(10,), num_conv_pos_embeddings=4,
                            num_conv_pos_embedding_groups=2, vocab_size=4)  # fmt: skip
    with pytest.raises(_Captured) as ctc:
        recipes.train_ctc(Wav2Vec2ForCTC(config), dict.fromkeys("abcd", 0), [], [], tmp_path)
    assert ctc.value.options == TrainOptions.for_ctc()
    with pytest.raises(_Captured) as s2s:
        seq2seq.train_seq2seq(_Model(), lambda text: [], [], [], tmp_path)
    assert s2s.value.options == TrainOptions.for_seq2seq()


class _Model:
    def freeze_feature_encoder(self) -> None:
        pass


def test_recipe_defaults_differ_where_they_should():
    ctc, adapter = TrainOptions.for_ctc(), TrainOptions.for_adapter()
    assert ctc.learning_rate < adapter.learning_rate and ctc.max_steps > adapter.max_steps
    assert ctc.checkpoint_every == adapter.checkpoint_every == 100
    assert TrainOptions.for_ctc(max_steps=20).warmup_steps == 20  # capped at max_steps
    assert TrainOptions.for_ctc(max_steps=20, warmup_steps=30).warmup_steps == 30  # as given
    with pytest.raises(Exception, match="Unknown training recipe 'ctcc'"):
        TrainOptions.for_recipe("ctcc")
    assert set(loop.RECIPE_DEFAULTS) == {"adapter", "ctc", "lid", "seq2seq"}
