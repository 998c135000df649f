"""Text tokenizers against the reference's, on tiny tokenizer files trained here offline:
a WordPiece (BERT ``vocab.txt``), a byte-level BPE (GPT-2 ``vocab.json`` + ``merges.txt``),
the ``tokenizer.json`` the reference writes for both, and a sentencepiece model in mBART's
and mBART-50's layouts. Ids and decoded strings must be identical."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmspeech import AutoProcessor, AutoTokenizer, Wav2Vec2Processor
from mmspeech.errors import ConfigError
from mmspeech.processing.feature_extraction import Wav2Vec2FeatureExtractor
from mmspeech.processing.text_tokenizer import TextTokenizer

pytestmark = pytest.mark.oracle
transformers = pytest.importorskip("transformers", reason="transformers is the test oracle")

tokenizers = pytest.importorskip("tokenizers")
sentencepiece = pytest.importorskip("sentencepiece")

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Speech translation turns English speech into German text!",
    "Ein kleiner Test der Übersetzung, wie geht es dir heute?",
    "hello world, this isn't a test; it's 42 tokens",
    "naïve café résumé über straße",
] * 30
TEXTS = [
    "The quick brown fox.",
    "Hello  World! it's UNSEEN qzx",
    "über café, naïve résumé?",
    "",
    "dog",
]


def bert_dir(tmp_path: Path, lower: bool) -> Path:
    trainer = tokenizers.trainers.WordPieceTrainer(
        vocab_size=120, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    )
    model = tokenizers.Tokenizer(tokenizers.models.WordPiece(unk_token="[UNK]"))
    model.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=lower)
    model.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    model.train_from_iterator(CORPUS, trainer)
    directory = tmp_path / f"bert-{lower}"
    directory.mkdir()
    vocab = sorted(model.get_vocab().items(), key=lambda item: item[1])
    (directory / "vocab.txt").write_text("".join(f"{token}\n" for token, _ in vocab))
    config = {"tokenizer_class": "BertTokenizer", "do_lower_case": lower}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory


def gpt2_dir(tmp_path: Path) -> Path:
    model = tokenizers.ByteLevelBPETokenizer()
    model.train_from_iterator(CORPUS, vocab_size=300, special_tokens=["<|endoftext|>"])
    directory = tmp_path / "gpt2"
    directory.mkdir()
    model.save_model(str(directory))
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "GPT2Tokenizer"})
    )
    return directory


def mbart_dir(tmp_path: Path, tokenizer_class: str) -> Path:
    directory = tmp_path / tokenizer_class
    directory.mkdir()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS),
        model_prefix=str(directory / "sentencepiece.bpe"),
        vocab_size=60,
        model_type="unigram",
        character_coverage=1.0,
        unk_id=0,  # the layout of mBART's own model
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    config = {"tokenizer_class": tokenizer_class, "src_lang": "en_XX", "tgt_lang": "de_DE"}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory


def assert_same(reference, ours: TextTokenizer) -> None:
    for text in TEXTS:
        ids = reference(text)["input_ids"]
        assert ours.encode(text) == ids, text
        assert ours(text)["input_ids"] == ids
        assert ours.encode(text, add_special_tokens=False) == reference.encode(
            text, add_special_tokens=False
        )
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == reference.decode(
                ids, skip_special_tokens=skip
            ), (text, skip)
    if reference.pad_token_id is not None:
        expected = reference(TEXTS, padding=True, return_tensors="pt")
        got = ours(TEXTS, padding=True, return_tensors="pt")
        assert torch.equal(got["input_ids"], expected["input_ids"])
        assert torch.equal(got["attention_mask"], expected["attention_mask"])
        assert ours.batch_decode(got["input_ids"], skip_special_tokens=True) == (
            reference.batch_decode(expected["input_ids"], skip_special_tokens=True)
        )
    assert ours.pad_token_id == reference.pad_token_id
    assert ours.eos_token_id == reference.eos_token_id


@pytest.mark.parametrize("lower", [True, False])
def test_bert_vocab_txt_and_its_tokenizer_json(tmp_path, lower):
    directory = bert_dir(tmp_path, lower)
    reference = transformers.AutoTokenizer.from_pretrained(directory)
    ours = AutoTokenizer.from_pretrained(directory)
    assert isinstance(ours, TextTokenizer)
    assert_same(reference, ours)
    reference.save_pretrained(tmp_path / "bert-json")
    assert (tmp_path / "bert-json" / "tokenizer.json").exists()
    assert_same(reference, TextTokenizer.from_pretrained(tmp_path / "bert-json"))


def test_gpt2_vocab_and_merges_and_its_tokenizer_json(tmp_path):
    directory = gpt2_dir(tmp_path)
    reference = transformers.AutoTokenizer.from_pretrained(directory)
    ours = AutoTokenizer.from_pretrained(directory)
    assert_same(reference, ours)
    assert ours.decode(ours.encode(" naïve  café")) == " naïve  café"  # byte-level round trip
    reference.save_pretrained(tmp_path / "gpt2-json")
    assert_same(reference, TextTokenizer.from_pretrained(tmp_path / "gpt2-json"))
    with pytest.raises(ConfigError, match="no pad token"):
        ours(TEXTS, padding=True)


@pytest.mark.parametrize("tokenizer_class", ["MBartTokenizer", "MBart50Tokenizer"])
def test_mbart_sentencepiece_with_fairseq_ids_and_language_codes(tmp_path, tokenizer_class):
    directory = mbart_dir(tmp_path, tokenizer_class)
    reference = transformers.AutoTokenizer.from_pretrained(directory)
    ours = AutoTokenizer.from_pretrained(directory)
    assert type(reference).__name__ == tokenizer_class
    assert_same(reference, ours)
    for code in ("en_XX", "de_DE", "zh_CN"):
        assert ours.convert_tokens_to_ids(code) == reference.convert_tokens_to_ids(code)
    mask = ours.convert_tokens_to_ids("<mask>")
    assert mask == reference.convert_tokens_to_ids("<mask>") and mask == len(ours) - 1
    target = reference(text_target="wie geht es dir")["input_ids"]
    assert ours(text_target="wie geht es dir")["input_ids"] == target
    assert ours.convert_ids_to_tokens(target).count("de_DE") == 1
    # ours written back is read back identically
    ours.save_pretrained(tmp_path / "saved")
    assert_same(reference, TextTokenizer.from_pretrained(tmp_path / "saved"))
    with pytest.raises(ConfigError, match="Unknown language code 'xx_YY'"):
        TextTokenizer.from_pretrained(directory, src_lang="xx_YY")


def test_processor_pairs_the_feature_extractor_with_a_text_tokenizer(tmp_path):
    directory = mbart_dir(tmp_path, "MBart50Tokenizer")
    Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(directory)
    reference = transformers.Wav2Vec2Processor(
        feature_extractor=transformers.Wav2Vec2FeatureExtractor.from_pretrained(directory),
        tokenizer=transformers.AutoTokenizer.from_pretrained(directory),
    )
    processor = AutoProcessor.from_pretrained(directory)
    assert isinstance(processor, Wav2Vec2Processor)
    assert isinstance(processor.tokenizer, TextTokenizer)
    audio = [np.sin(np.arange(3000) / 7.0).astype(np.float32), np.ones(2000, np.float32)]
    texts = ["the quick fox", "wie geht es"]
    got = processor(
        audio=audio, text=texts, sampling_rate=16_000, return_tensors="pt", padding=True
    )
    expected = reference(
        audio=audio, text=texts, sampling_rate=16_000, return_tensors="pt", padding=True
    )
    assert torch.allclose(got["input_values"], expected["input_values"], atol=1e-6)
    assert torch.equal(got["labels"], expected["labels"])
    ids = got["labels"]
    assert processor.batch_decode(ids, skip_special_tokens=True) == reference.batch_decode(
        ids, skip_special_tokens=True
    )
    assert processor.batch_decode(ids, skip_special_tokens=True)[1] == "wie geht es"


def test_a_directory_without_tokenizer_files_is_refused(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer"})
    )
    with pytest.raises(ConfigError, match="no text tokenizer files"):
        AutoTokenizer.from_pretrained(tmp_path)
