"""Compute types (int8, bfloat16, float16) and the load-settings object, on every family.

Each reduced type is compared with float32 of the same checkpoint (our own models, which the
parity tests hold to the reference): the bounds here are this suite's, the accuracy on real
speech is measured by benchmarks/precision.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import TINY, espeak

import mmspeech
from mmspeech import LoadOptions, Wav2Vec2ForCTC
from mmspeech.checkpoints import compute
from mmspeech.checkpoints.convert import convert_checkpoint
from mmspeech.demo import demo_checkpoint
from mmspeech.errors import ConfigError
from mmspeech.models.speech_encoder_decoder import (
    SpeechEncoderDecoderConfig,
    SpeechEncoderDecoderModel,
)
from mmspeech.models.text_decoders import BartConfig, BertConfig, GPT2Config
from mmspeech.models.vits import VitsConfig, VitsModel
from mmspeech.models.wav2vec2 import Wav2Vec2Config
from mmspeech.nn import int8
from mmspeech.nn.int8 import Int8Conv1d, Int8Linear, Int8Weight, quantize_rows

CPU_TYPES = ("int8", "int8_bfloat16", "bfloat16")
ONEDNN = pytest.mark.skipif(not int8.onednn_int8_available(), reason="no oneDNN int8 in this torch")
PACKING = pytest.mark.parametrize(
    "packed", [False, pytest.param(True, marks=ONEDNN)], ids=["int_mm", "onednn"]
)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(
        torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), 0)
    )


def tone_speech(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    """A deterministic speech-like waveform (voiced harmonics with a moving pitch)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    pitch = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / 16000
    wave = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(5 * t))
    return (wave + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


# -- the int8 linear layer ------------------------------------------------------------------------


def test_quantize_rows_is_symmetric_per_row():
    x = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0], [100.0, 3.0, -1.0]])
    q, scale = quantize_rows(x)
    assert q.dtype == torch.int8 and scale.shape == (3, 1)
    assert q[0].tolist() == [64, -127, 32]  # 2.0 is the row's largest magnitude -> 127
    assert q[1].tolist() == [0, 0, 0]
    assert torch.allclose(q.float() * scale, x, atol=float(scale.max()) / 2 + 1e-6)


def test_quantize_rows_in_blocks_equals_the_whole_at_once(monkeypatch):
    torch.manual_seed(1)
    x = torch.randn(37, 50) * torch.rand(37, 1) * 10
    whole = quantize_rows(x)
    monkeypatch.setattr(int8, "_SCRATCH_FLOATS", 200)  # 4 rows a block, the last one short
    monkeypatch.setattr(int8, "_SCRATCH", threading.local())
    blocked = quantize_rows(x)
    assert int8._SCRATCH.buffer.numel() == 200  # went through the blocks
    assert torch.equal(blocked[0], whole[0]) and torch.equal(blocked[1], whole[1])
    assert torch.equal(quantize_rows(x.bfloat16())[0], quantize_rows(x.bfloat16().float())[0])


def test_quantize_rows_in_blocks_inside_and_outside_inference_mode(monkeypatch):
    # the thread's buffer, first made under inference mode, is written to again outside it (a
    # forward, then loading a model in int8: benchmarks/precision.py failed that way), and a
    # weight that requires a gradient is quantised through it
    monkeypatch.setattr(int8, "_SCRATCH_FLOATS", 200)
    monkeypatch.setattr(int8, "_SCRATCH", threading.local())
    x = torch.randn(37, 50)
    with torch.inference_mode():
        inside = quantize_rows(x)
    weight = torch.nn.Parameter(x.clone())
    outside = quantize_rows(weight)
    assert not outside[0].requires_grad
    assert torch.equal(inside[0], outside[0]) and torch.equal(inside[1], outside[1])


@PACKING
def test_projections_sharing_an_input_equal_each_layer_alone(packed):
    torch.manual_seed(2)
    layers = [Int8Linear.from_linear(torch.nn.Linear(32, n)) for n in (32, 32, 16)]
    if packed:
        assert all(layer.pack() for layer in layers)
    x = torch.randn(2, 9, 32)
    with torch.no_grad():
        shared = Int8Linear.shared_input(x, layers)
        for layer, out in zip(layers, shared, strict=True):
            assert out.shape == (2, 9, layer.out_features)
            assert torch.equal(out, layer(x))


def test_attention_quantises_its_input_once_for_query_key_and_value(monkeypatch):
    from mmspeech.nn.attention import MultiHeadAttention

    torch.manual_seed(3)
    attention = MultiHeadAttention(32, 4).eval()
    x = torch.randn(1, 6, 32)
    with torch.no_grad():
        expected = attention(x)
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            setattr(attention, name, Int8Linear.from_linear(getattr(attention, name)))
        calls = []
        quantize = int8.quantize_rows
        monkeypatch.setattr(int8, "quantize_rows", lambda x: calls.append(1) or quantize(x))
        out = attention(x)
    assert len(calls) == 2  # query/key/value once, the output projection once
    assert cosine(out, expected) > 0.999


@PACKING
def test_int8_linear_matches_the_formula_and_the_float_layer(packed):
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    layer = Int8Linear.from_linear(linear)
    x = torch.randn(5, 7, 64)
    q, x_scale = quantize_rows(x.reshape(-1, 64))
    expected = (q.int() @ layer.plain_weight().int().t()).float() * x_scale * layer.weight_scale
    expected = (expected + linear.bias).reshape(5, 7, 48)
    assert layer.pack() if packed else layer.packed is None
    with torch.no_grad():
        out = layer(x)
        assert torch.allclose(out, expected, atol=1e-5)
        assert cosine(out, linear(x)) > 0.9995
        assert layer(x.bfloat16()).dtype == torch.bfloat16


@PACKING
@pytest.mark.parametrize(
    ("kernel", "stride", "batch"), [(3, 2, 1), (3, 2, 2), (2, 2, 1), (4, 3, 1)]
)
def test_int8_conv_is_the_int8_product_over_windows(kernel, stride, batch, packed, monkeypatch):
    torch.manual_seed(kernel + batch)
    conv = torch.nn.Conv1d(24, 16, kernel, stride)
    layer = Int8Conv1d.from_conv(conv)
    x = torch.randn(batch, 24, 41)
    # the windows as rows, (frame, channel) order, through the int8 linear formula
    rows = x.unfold(2, kernel, stride).permute(0, 2, 3, 1).reshape(-1, kernel * 24)
    q, x_scale = quantize_rows(rows)
    expected = (q.int() @ layer.plain_weight().int().t()).float() * x_scale * layer.weight_scale
    expected = (expected + conv.bias).reshape(batch, -1, 16).transpose(1, 2)
    assert layer.pack() if packed else layer.packed is None
    with torch.no_grad():
        out = layer(x)
        assert out.shape == conv(x).shape
        assert torch.allclose(out, expected, atol=1e-5)
        assert cosine(out, conv(x)) > 0.9995
        channels_last = layer.forward_channels_last(x.transpose(1, 2).contiguous())
        assert torch.equal(channels_last, out.transpose(1, 2))
        monkeypatch.setattr(int8, "_CONV_ROWS", 5)  # a block of windows at a time
        assert torch.equal(layer(x), out)
    assert not Int8Conv1d.supports(torch.nn.Conv1d(24, 16, 3, padding=1))
    assert not Int8Conv1d.supports(torch.nn.Conv1d(24, 16, 3, groups=4))


@ONEDNN
def test_a_packed_layer_saves_moves_and_loads_as_its_plain_weight():
    torch.manual_seed(1)
    layer = Int8Linear.from_linear(torch.nn.Linear(32, 20))
    plain = layer.plain_weight().clone()
    x = torch.randn(3, 32)
    with torch.no_grad():
        before = layer(x)
        assert layer.pack() and layer.weight is None
        state = layer.state_dict()
        assert torch.equal(state["weight"], plain) and state["weight"].shape == (20, 32)
        layer.to(torch.bfloat16)  # unpacks, casts nothing int8, packs again on use
        assert layer.packed is None and layer.pack_on_use
        assert torch.allclose(layer(x), before, atol=1e-5)
        assert layer.packed is not None and layer.weight is None
        fresh = Int8Linear.from_linear(torch.nn.Linear(32, 20))
        fresh.pack()
        fresh.load_state_dict(state)  # into a packed layer: unpacked, then assigned
        assert torch.equal(fresh.plain_weight(), plain)
        assert torch.allclose(fresh(x), before, atol=1e-5)


@ONEDNN
def test_the_first_int8_call_packs_every_layer_of_the_model(monkeypatch):
    # all at once, before the forward's activations: packed weights between activations
    # fragment the heap (tens of MB more peak on mms-1b-all)
    model = Wav2Vec2ForCTC.from_pretrained(demo_checkpoint("asr"), compute_type="int8")
    layers = [m for m in model.modules() if isinstance(m, Int8Weight)]
    assert len(layers) > 2 and all(m.packed is None for m in layers)
    trims = []  # the plain weights quantised at load are freed heap: handed back once, then
    monkeypatch.setattr(int8, "release_freed_memory", lambda: trims.append(1))
    last = layers[-1]
    with torch.inference_mode():
        last(torch.randn(3, last.in_features))
        assert all(m.packed is not None and m.weight is None for m in layers)
        assert len(trims) == 1
        layers[-2](torch.randn(3, layers[-2].in_features))
    assert len(trims) == 1


def test_cpu_int8_layers_pack_on_first_use(tmp_path):
    model = Wav2Vec2ForCTC.from_pretrained(demo_checkpoint("asr"), compute_type="int8")
    layers = [m for m in model.modules() if isinstance(m, Int8Weight)]
    assert layers and all(m.pack_on_use and m.packed is None for m in layers)
    values = torch.from_numpy(tone_speech())[None]
    with torch.inference_mode():
        plain = model(values).logits
        assert all((m.packed is not None) == int8.onednn_int8_available() for m in layers)
        assert torch.allclose(model(values).logits, plain, atol=1e-5)  # packed already
    model.save_pretrained(tmp_path)  # the plain weights, in the converted format
    again = Wav2Vec2ForCTC.from_pretrained(tmp_path, compute_type="int8")
    saved = again.state_dict()
    assert saved.keys() == model.state_dict().keys()
    for name, a in model.state_dict().items():
        b = saved[name]  # int8 layers exactly; weight norm is unfolded to save and folded to load
        same = torch.equal(a, b) if a.dtype == torch.int8 else torch.allclose(a, b, atol=1e-6)
        assert same, name


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/maps, madvise")
def test_releasing_pages_keeps_file_backed_data_and_leaves_other_memory_alone(tmp_path):
    from safetensors.torch import load_file, save_file

    data = torch.randint(-128, 127, (64, 4096), dtype=torch.int8)
    save_file({"w": data}, str(tmp_path / "w.safetensors"))
    mapped = load_file(str(tmp_path / "w.safetensors"))["w"]
    assert int8._in_file_mapping(mapped.data_ptr(), mapped.data_ptr() + mapped.numel())
    int8._release_mapped_pages(mapped)
    assert torch.equal(mapped, data)  # read again from the file
    anonymous = data.clone()
    assert not int8._in_file_mapping(anonymous.data_ptr(), anonymous.data_ptr() + 1)
    int8._release_mapped_pages(anonymous)  # would zero it if it acted
    assert torch.equal(anonymous, data)


# -- load settings --------------------------------------------------------------------------------


def test_unknown_or_conflicting_settings_are_clear_errors():
    with pytest.raises(ConfigError, match=r"int4.*expected one of: auto, float32"):
        LoadOptions(compute_type="int4")
    with pytest.raises(ConfigError, match="disagree"):
        LoadOptions(dtype="float16", compute_type="int8")
    with pytest.raises(ConfigError, match="CUDA GPUs only"):
        compute.resolve_compute_type("float16", torch.device("cpu"))
    with pytest.raises(TypeError, match="bogus_option"):
        Wav2Vec2ForCTC.from_pretrained(demo_checkpoint("asr"), bogus_option=3)
    with pytest.raises(TypeError, match="computetype"):
        mmspeech.load_lid("demo-lid", device="cpu", computetype="int8")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="sees no CUDA GPU"):
            LoadOptions(device="cuda").torch_device()


def test_auto_resolves_per_device(monkeypatch):
    cpu = torch.device("cpu")
    flags = {"avx512_vnni", "avx512_bf16"}
    monkeypatch.setattr(compute, "_cpu_flags", lambda: frozenset(flags))
    assert compute.resolve_compute_type("auto", cpu) == "int8_bfloat16"  # AMD EPYC (Zen 4)
    monkeypatch.setattr(compute, "_cpu_flags", lambda: frozenset({*flags, "amx_bf16"}))
    assert compute.resolve_compute_type("auto", cpu) == "bfloat16"  # Sapphire Rapids
    monkeypatch.setattr(compute, "_cpu_flags", lambda: frozenset({"avx512_vnni"}))
    assert compute.resolve_compute_type("auto", cpu) == "int8"
    monkeypatch.setattr(compute, "_cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert compute.resolve_compute_type("auto", cpu) == "bfloat16"
    monkeypatch.setattr(compute, "_cpu_flags", lambda: frozenset({"avx2"}))
    assert compute.resolve_compute_type("auto", cpu) == "float32"
    assert compute.resolve_compute_type(None, cpu) == "float32"
    assert compute.resolve_compute_type("int8_float32", cpu) == "int8"
    if torch.cuda.is_available():
        assert compute.resolve_compute_type("auto", torch.device("cuda")) == "float16"


def test_short_names_load_the_bundled_checkpoints():
    asr = mmspeech.load_asr("demo", device="cpu")
    assert asr.ref == "demo" and "fra" in asr.languages
    assert mmspeech.load_lid("demo-lid", device="cpu").languages


# -- every family ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_float() -> Any:
    return Wav2Vec2ForCTC.from_pretrained(demo_checkpoint("asr"), target_lang="fra")


@pytest.mark.parametrize("compute_type", CPU_TYPES)
def test_ctc_model_in_each_type_stays_close_to_float32(demo_float, compute_type):
    model = Wav2Vec2ForCTC.from_pretrained(
        demo_checkpoint("asr"), target_lang="fra", compute_type=compute_type
    )
    assert model.compute_type == compute_type
    blocks = model.wav2vec2.encoder.layers
    is_int8 = compute_type.startswith("int8")
    assert isinstance(blocks[0].feed_forward.intermediate_dense, Int8Linear) == is_int8
    assert not isinstance(blocks[0].adapter_layer.linear_1, Int8Linear)  # adapters stay float
    convs = [layer.conv for layer in model.wav2vec2.feature_extractor.conv_layers]
    assert not isinstance(convs[0], Int8Conv1d)  # the one on the waveform stays float
    assert all(isinstance(conv, Int8Conv1d) == is_int8 for conv in convs[1:])
    wave = torch.from_numpy(tone_speech())[None]
    with torch.inference_mode():
        reference = demo_float(wave).logits
        logits = model(wave.to(model.dtype)).logits.float()
    assert cosine(logits, reference) > 0.995
    agreement = (logits.argmax(-1) == reference.argmax(-1)).float().mean()
    assert agreement > 0.9


def test_adapter_switch_on_a_quantised_base_equals_quantising_after_the_switch():
    switched = Wav2Vec2ForCTC.from_pretrained(
        demo_checkpoint("asr"), target_lang="eng", compute_type="int8"
    )
    switched.load_adapter("deu")
    direct = Wav2Vec2ForCTC.from_pretrained(
        demo_checkpoint("asr"), target_lang="deu", compute_type="int8"
    )
    wave = torch.from_numpy(tone_speech(seed=3))[None]
    with torch.inference_mode():
        assert torch.equal(switched(wave).logits, direct(wave).logits)


def test_asr_api_transcribes_in_int8_like_float32():
    # espeak-ng speech, not tone_speech: the demo model learnt to write nothing for non-speech
    wave = espeak("please call me back tomorrow", "en")
    float32 = mmspeech.load_asr("demo", device="cpu")
    int8 = mmspeech.load_asr("demo", device="cpu", compute_type="int8")
    assert int8.model.compute_type == "int8"
    a = float32.transcribe(wave, "eng").text
    b = int8.transcribe(wave, "eng").text
    assert a and _char_distance(a, b) <= max(2, len(a) // 10)
    # the language-ID model of an int8 ASR model is loaded int8 too, and kept by it
    scores = int8.detect_language(wave)
    assert scores.language in int8.languages
    lid = int8.lid_provider(mmspeech.TranscribeOptions().lid_model)
    assert lid.model.compute_type == "int8" and int8.lid_provider(lid.ref) is not None
    assert int8.lid_provider(mmspeech.TranscribeOptions().lid_model) is lid  # kept, not reloaded


def _char_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


ENCODER = {k: v for k, v in TINY.items() if k not in ("classifier_proj_size", "vocab_size")}
DECODERS = {
    "bert": BertConfig(vocab_size=24, hidden_size=32, num_hidden_layers=2, intermediate_size=48,
                       num_attention_heads=4, max_position_embeddings=64),
    "gpt2": GPT2Config(vocab_size=24, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                       bos_token_id=0, eos_token_id=2),
    "bart": BartConfig(vocab_size=24, d_model=32, decoder_layers=2, decoder_ffn_dim=48,
                       decoder_attention_heads=4, max_position_embeddings=64, encoder_layers=2),
}  # fmt: skip


@pytest.fixture(scope="module", params=sorted(DECODERS))
def seq2seq_dir(request, tmp_path_factory) -> Path:
    config = SpeechEncoderDecoderConfig.from_encoder_decoder_configs(
        Wav2Vec2Config(**ENCODER), DECODERS[request.param],
        decoder_start_token_id=0, pad_token_id=1, eos_token_id=2,
    )  # fmt: skip
    torch.manual_seed(0)
    model = SpeechEncoderDecoderModel(config)
    directory = tmp_path_factory.mktemp(f"s2t-{request.param}")
    model.save_pretrained(directory)
    return directory


@pytest.mark.parametrize("compute_type", CPU_TYPES)
def test_speech_encoder_decoder_in_each_type(seq2seq_dir, compute_type):
    reference = SpeechEncoderDecoderModel.from_pretrained(seq2seq_dir)
    model = SpeechEncoderDecoderModel.from_pretrained(seq2seq_dir, compute_type=compute_type)
    if compute_type.startswith("int8"):
        assert any(isinstance(m, Int8Linear) for m in model.decoder.modules())
    wave = torch.from_numpy(tone_speech(1.0))[None]
    labels = torch.tensor([[3, 4, 5, 6, 2]])
    with torch.inference_mode():
        expected = reference(wave, labels=labels).logits
        logits = model(wave.to(model.dtype), labels=labels).logits.float()
        ids = model.generate(wave.to(model.dtype), max_new_tokens=6, min_new_tokens=6)
    assert cosine(logits, expected) > 0.99
    assert ids.shape == (1, 7)  # decoder start + 6 tokens, with the KV cache in the type


@pytest.fixture(scope="module")
def vits_dir(tmp_path_factory) -> Path:
    config = VitsConfig(
        vocab_size=20, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, window_size=2,
        ffn_dim=24, flow_size=8, spectrogram_bins=9, upsample_initial_channel=16,
        upsample_rates=(4, 2), upsample_kernel_sizes=(8, 4), resblock_kernel_sizes=(3, 5),
        resblock_dilation_sizes=((1, 3), (1, 2)), prior_encoder_num_flows=2,
        prior_encoder_num_wavenet_layers=2, posterior_encoder_num_wavenet_layers=2,
        duration_predictor_filter_channels=12, duration_predictor_num_flows=3,
        depth_separable_num_layers=2, noise_scale=0.0, noise_scale_duration=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = VitsModel(config)
    directory = tmp_path_factory.mktemp("vits")
    model.save_pretrained(directory)
    return directory


@pytest.mark.parametrize("compute_type", ["bfloat16", "int8"])
def test_vits_in_each_type(vits_dir, compute_type):
    reference = VitsModel.from_pretrained(vits_dir)
    model = VitsModel.from_pretrained(vits_dir, compute_type=compute_type)
    ids = torch.tensor([[1, 5, 3, 7, 2, 9, 4]])
    with torch.inference_mode():
        expected = reference(ids).waveform
        waveform = model(ids).waveform.float()
    assert waveform.shape == expected.shape  # the same durations
    assert cosine(waveform, expected) > 0.98


# -- converted checkpoints ------------------------------------------------------------------------


@pytest.mark.parametrize("compute_type", ["int8", "bfloat16"])
def test_convert_round_trip(tmp_path, demo_float, compute_type):
    out = convert_checkpoint(demo_checkpoint("asr"), tmp_path / "out", compute_type)
    assert sorted(p.name for p in out.glob("adapter.*")) == [
        f"adapter.{lang}.safetensors" for lang in ("deu", "ell", "eng", "fra", "rus", "spa")
    ]
    assert (out / "vocab.json").is_file() and oct((out / "model.safetensors").stat().st_mode)[-3:]
    loaded = Wav2Vec2ForCTC.from_pretrained(out, target_lang="fra")
    assert loaded.compute_type == compute_type
    direct = Wav2Vec2ForCTC.from_pretrained(
        demo_checkpoint("asr"), target_lang="fra", compute_type=compute_type
    )
    wave = torch.from_numpy(tone_speech(seed=5))[None]
    with torch.inference_mode():
        a = loaded(wave.to(loaded.dtype)).logits.float()
        b = direct(wave.to(direct.dtype)).logits.float()
    assert (a - b).abs().max() < (1e-5 if compute_type == "int8" else 5e-2)
    if compute_type == "int8":
        size = (out / "model.safetensors").stat().st_size
        assert size < 0.7 * (demo_checkpoint("asr") / "model.safetensors").stat().st_size
        with pytest.raises(ConfigError, match="converted to int8"):
            Wav2Vec2ForCTC.from_pretrained(out, compute_type="float32")
        assert Wav2Vec2ForCTC.from_pretrained(out, compute_type="int8_bfloat16").dtype == (
            torch.bfloat16
        )
    with pytest.raises(ConfigError, match="already holds a checkpoint"):
        convert_checkpoint(demo_checkpoint("asr"), out, compute_type)


def test_int8_directory_with_float_convs_still_loads(tmp_path):
    """A directory converted by an earlier mmspeech kept the feature encoder's convs float: it
    loads, and quantises them at load like a float checkpoint."""
    from safetensors.torch import load_file, save_file

    out = convert_checkpoint(demo_checkpoint("asr"), tmp_path / "out", "int8", languages=["fra"])
    state = load_file(out / "model.safetensors")
    original = load_file(demo_checkpoint("asr") / "model.safetensors")
    for key in [key for key in state if key.endswith("conv.weight_scale")]:
        del state[key]
        weight = key.removesuffix("_scale")
        state[weight] = original[weight]
    save_file(state, out / "model.safetensors", metadata={"format": "pt"})
    old = Wav2Vec2ForCTC.from_pretrained(out, target_lang="fra")
    fresh = Wav2Vec2ForCTC.from_pretrained(
        demo_checkpoint("asr"), target_lang="fra", compute_type="int8"
    )
    assert isinstance(old.wav2vec2.feature_extractor.conv_layers[1].conv, Int8Conv1d)
    wave = torch.from_numpy(tone_speech(seed=6))[None]
    with torch.inference_mode():
        assert (old(wave).logits - fresh(wave).logits).abs().max() < 1e-4


def test_cli_convert_and_compute_type(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = [sys.executable, "-m", "mmspeech"]
    converted = tmp_path / "int8"
    command = ["convert", "demo", "-o", str(converted), "--compute-type", "int8", "-l", "eng"]
    done = subprocess.run([*run, *command], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert [p.name for p in converted.glob("adapter.*")] == ["adapter.eng.safetensors"]
    wav = tmp_path / "tone.wav"
    import soundfile

    soundfile.write(wav, tone_speech(1.0), 16000)
    for extra in (["--model", str(converted)], ["--model", "demo", "--compute-type", "int8"]):
        done = subprocess.run([*run, "transcribe", str(wav), "-l", "eng", *extra],
                              capture_output=True, text=True, env=env)  # fmt: skip
        assert done.returncode == 0, done.stderr
    done = subprocess.run([*run, "transcribe", str(wav), "--compute-type", "int4"],
                          capture_output=True, text=True, env=env)  # fmt: skip
    assert done.returncode == 2 and "--compute-type" in done.stderr


# -- CUDA (skipped without a GPU) -----------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("compute_type", ["float16", "bfloat16", "int8", "int8_float16"])
def test_cuda_types(demo_float, compute_type):
    model = Wav2Vec2ForCTC.from_pretrained(
        demo_checkpoint("asr"), target_lang="fra", compute_type=compute_type, device="cuda"
    )
    wave = torch.from_numpy(tone_speech())[None]
    with torch.inference_mode():
        reference = demo_float(wave).logits
        logits = model(wave.to("cuda", model.dtype)).logits.float().cpu()
    assert cosine(logits, reference) > 0.995


def test_training_refuses_an_inference_compute_type():
    from mmspeech.training import Trainer, Utterance

    model = Wav2Vec2ForCTC.from_pretrained(demo_checkpoint("asr"), compute_type="int8")
    utterance = Utterance(audio="tone.wav", text="a", waveform=tone_speech(0.5))
    with pytest.raises(ConfigError, match="compute_type 'int8', an inference format"):
        Trainer(model, object(), [utterance], [])  # type: ignore[arg-type]
