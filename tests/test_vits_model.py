"""VitsModel parity against the oracle (transformers' VitsModel) on tiny random checkpoints.

Every weight is perturbed so every tensor matters; the decoder's last conv is scaled down so the
waveform stays in tanh's linear range (a saturated output would hide differences).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import max_diff, perturb
from safetensors.torch import load_file, save_file

import mmspeech
from mmspeech.errors import ConfigError
from mmspeech.models.vits import VitsConfig, VitsModel

transformers = pytest.importorskip("transformers")

TINY_VITS: dict[str, Any] = {
    "vocab_size": 20,
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "window_size": 2,
    "ffn_dim": 24,
    "flow_size": 8,
    "spectrogram_bins": 9,
    "upsample_initial_channel": 16,
    "upsample_rates": [4, 2],
    "upsample_kernel_sizes": [8, 4],
    "resblock_kernel_sizes": [3, 5],
    "resblock_dilation_sizes": [[1, 3], [1, 2]],
    "prior_encoder_num_flows": 2,
    "prior_encoder_num_wavenet_layers": 2,
    "posterior_encoder_num_wavenet_layers": 2,
    "wavenet_dilation_rate": 2,
    "duration_predictor_filter_channels": 12,
    "duration_predictor_num_flows": 3,
    "depth_separable_num_layers": 2,
}
TOLERANCE = 1e-4


pytestmark = [pytest.mark.oracle, pytest.mark.usefixtures("one_thread")]  # tests/conftest.py


def reference_vits(stochastic: bool = True, speakers: int = 1, seed: int = 0) -> Any:
    config = transformers.VitsConfig(
        **TINY_VITS,
        use_stochastic_duration_prediction=stochastic,
        num_speakers=speakers,
        speaker_embedding_size=6 if speakers > 1 else 0,
    )
    torch.manual_seed(seed)
    model = transformers.VitsModel(config).eval()
    perturb(model, seed)
    with torch.no_grad():
        model.decoder.conv_post.weight.mul_(0.05)
    return model


def old_spelling(directory: Path) -> None:
    """Rewrite the weight-norm keys as weight_g / weight_v (as real MMS-TTS repos spell them)."""
    path = directory / "model.safetensors"
    state = load_file(path)
    renamed = {
        key.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): tensor
        for key, tensor in state.items()
    }
    assert any(key.endswith("weight_g") for key in renamed)
    save_file(renamed, path, metadata={"format": "pt"})


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """(stochastic, speakers, spelling) -> (reference model, our model), built once each."""
    cache: dict[tuple[bool, int, str], tuple[Any, VitsModel]] = {}

    def get(stochastic: bool = True, speakers: int = 1, spelling: str = "new") -> Any:
        key = (stochastic, speakers, spelling)
        if key not in cache:
            reference = reference_vits(stochastic, speakers)
            directory = tmp_path_factory.mktemp("vits")
            reference.save_pretrained(directory)
            if spelling == "old":
                old_spelling(directory)
            cache[key] = (reference, VitsModel.from_pretrained(directory))
        return cache[key]

    return get


def token_ids(length: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1, TINY_VITS["vocab_size"], (1, length), generator=generator)


def quiet(model: Any) -> None:
    model.noise_scale = 0.0
    model.noise_scale_duration = 0.0


@pytest.mark.parametrize("spectral", [False, True])
@pytest.mark.parametrize("spelling", ["new", "old"])
@pytest.mark.parametrize("speakers", [1, 3])
@pytest.mark.parametrize("stochastic", [True, False])
def test_waveform_matches_reference(checkpoints, request, stochastic, speakers, spelling, spectral):
    if spectral:  # every decoder conv in the frequency domain (mmspeech.nn.fft_conv)
        request.getfixturevalue("spectral_everywhere")
        from mmspeech.models.vits import hifigan

        assert hifigan.spectral_segment(8, 3) is not None
    reference, model = checkpoints(stochastic, speakers, spelling)
    quiet(reference)
    quiet(model)
    speaker = 2 if speakers > 1 else None
    ids = token_ids(15)
    with torch.no_grad():
        expected = reference(ids, speaker_id=speaker)
        found = model(ids, speaker_id=speaker)
    assert torch.equal(found.sequence_lengths, expected.sequence_lengths)
    assert found.waveform.shape == expected.waveform.shape
    assert max_diff(found.spectrogram, expected.spectrogram) <= TOLERANCE
    assert max_diff(found.waveform, expected.waveform) <= TOLERANCE
    assert found.waveform.abs().max() < 0.95  # not saturated: the comparison means something


@pytest.mark.parametrize("rate", [0.5, 1.5])
@pytest.mark.parametrize("stochastic", [True, False])
def test_speaking_rate_matches_reference(checkpoints, stochastic, rate):
    reference, model = checkpoints(stochastic)
    quiet(reference)
    quiet(model)
    ids = token_ids(12, seed=1)
    with torch.no_grad():
        expected = reference(ids, speaking_rate=rate)
        found = model(ids, speaking_rate=rate)
        reference.speaking_rate = rate
        model.speaking_rate = rate
        try:
            by_attribute = model(ids).waveform
            expected_attribute = reference(ids).waveform
        finally:
            reference.speaking_rate = model.speaking_rate = 1.0
    assert torch.equal(found.sequence_lengths, expected.sequence_lengths)
    assert max_diff(found.waveform, expected.waveform) <= TOLERANCE
    assert max_diff(by_attribute, expected_attribute) <= TOLERANCE
    with torch.no_grad():
        normal = model(ids, noise_scale=0.0, noise_scale_duration=0.0)
    faster, slower = rate > 1, rate < 1
    assert (found.sequence_lengths < normal.sequence_lengths).item() == faster
    assert (found.sequence_lengths > normal.sequence_lengths).item() == slower


@pytest.mark.parametrize("speakers", [1, 3])
@pytest.mark.parametrize("stochastic", [True, False])
def test_submodules_match_reference(checkpoints, stochastic, speakers):
    reference, model = checkpoints(stochastic, speakers)
    ids = torch.cat([token_ids(11, seed=2), token_ids(11, seed=3)])
    attention_mask = torch.ones_like(ids)
    attention_mask[1, 7:] = 0
    mask = attention_mask[:, None, :].float()  # (B, 1, T)
    speakers_ours = model.speaker_embeddings(1)
    speakers_ref = reference.embed_speaker(torch.tensor([1]))[..., None] if speakers > 1 else None
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        ref_text = reference.text_encoder(ids, mask.transpose(1, 2), attention_mask)
        text = model.text_encoder(ids, mask)
        assert max_diff(text.hidden_states, ref_text.last_hidden_state) <= 1e-5
        assert max_diff(text.prior_means, ref_text.prior_means) <= 1e-5
        assert max_diff(text.prior_log_stds, ref_text.prior_log_variances) <= 1e-5

        hidden = ref_text.last_hidden_state.transpose(1, 2)
        if stochastic:
            ref_log_durations = reference.duration_predictor(
                hidden, mask, speakers_ref, reverse=True, noise_scale=0.0
            )
        else:
            ref_log_durations = reference.duration_predictor(hidden, mask, speakers_ref)
        log_durations = model.duration_predictor(hidden, mask, speakers_ours, noise_scale=0.0)
        assert max_diff(log_durations, ref_log_durations) <= 1e-5

        latents = torch.randn(2, TINY_VITS["flow_size"], 30, generator=generator)
        frame_mask = torch.ones(2, 1, 30)
        frame_mask[1, :, 21:] = 0
        expected = reference.flow(latents, frame_mask, speakers_ref, reverse=True)
        assert max_diff(model.flow.inverse(latents, frame_mask, speakers_ours), expected) <= 1e-5

        spectrogram = torch.randn(2, TINY_VITS["flow_size"], 9, generator=generator)
        expected = reference.decoder(spectrogram, speakers_ref)
        assert max_diff(model.decoder(spectrogram, speakers_ours), expected) <= 1e-5


@pytest.mark.parametrize("stochastic", [True, False])
def test_padded_batch_items_equal_unbatched(checkpoints, stochastic):
    reference, model = checkpoints(stochastic)
    quiet(reference)
    quiet(model)
    lengths = [14, 6, 10]
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    attention_mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        ids[row, :length] = token_ids(length, seed=10 + row)[0]
        attention_mask[row, :length] = 1
    with torch.no_grad():
        batch = model(ids, attention_mask)
        for row, length in enumerate(lengths):
            alone = model(ids[row : row + 1, :length])
            expected = reference(ids[row : row + 1, :length])
            n = int(batch.sequence_lengths[row])
            assert n == int(alone.sequence_lengths[0]) == int(expected.sequence_lengths[0])
            assert max_diff(batch.waveform[row, :n], alone.waveform[0]) <= 1e-5
            assert max_diff(batch.waveform[row, :n], expected.waveform[0]) <= TOLERANCE
            assert not batch.waveform[row, n:].any()


def test_seeded_noise_is_reproducible(checkpoints):
    _, model = checkpoints(True)
    model.noise_scale, model.noise_scale_duration = 0.667, 0.8
    ids = token_ids(12, seed=4)
    with torch.no_grad():
        first = model(ids, generator=torch.Generator().manual_seed(7)).waveform
        second = model(ids, generator=torch.Generator().manual_seed(7)).waveform
        other = model(ids, generator=torch.Generator().manual_seed(8)).waveform
        mmspeech.set_seed(555)
        seeded = model(ids).waveform
        mmspeech.set_seed(555)
        seeded_again = model(ids).waveform
    assert torch.equal(first, second)
    assert torch.equal(seeded, seeded_again)
    assert first.shape != other.shape or not torch.equal(first, other)


def test_set_seed_reproduces_the_reference_with_noise(checkpoints):
    """Noise is drawn in the reference's order and shapes, so a seed gives its exact output."""
    reference, model = checkpoints(True, 3)
    reference.noise_scale, reference.noise_scale_duration = 0.667, 0.8
    model.noise_scale, model.noise_scale_duration = 0.667, 0.8
    ids = token_ids(12, seed=5)
    with torch.no_grad():
        mmspeech.set_seed(555)
        expected = reference(ids, speaker_id=1)
        mmspeech.set_seed(555)
        found = model(ids, speaker_id=1)
    assert torch.equal(found.sequence_lengths, expected.sequence_lengths)
    assert max_diff(found.waveform, expected.waveform) <= TOLERANCE


def test_speaker_id_out_of_range(checkpoints):
    _, model = checkpoints(True, 3)
    with pytest.raises(ConfigError, match=r"0\.\.2"):
        model(token_ids(5), speaker_id=3)


def test_config_round_trip_and_defaults(tmp_path):
    ours = VitsConfig().to_dict()
    theirs = transformers.VitsConfig().to_dict()
    for key, value in ours.items():
        if key in theirs:
            expected = theirs[key]
            expected = json.loads(json.dumps(expected))  # tuples -> lists
            assert value == expected, key
    assert VitsConfig.from_dict(VitsConfig().to_dict()) == VitsConfig()
    assert VitsConfig().hop_length == 256
    with pytest.raises(ConfigError, match="upsample"):
        VitsConfig(upsample_rates=(8, 8), upsample_kernel_sizes=(16,))


def test_full_size_parameter_count():
    with torch.device("meta"):
        model = VitsModel(VitsConfig())
    inference = model.num_parameters() - sum(
        p.numel() for p in model.posterior_encoder.parameters()
    )
    assert 35e6 < model.num_parameters() < 37e6
    assert inference < 30e6


def test_per_item_speakers_in_a_batch(checkpoints):
    _, model = checkpoints(False, 3)
    ids = torch.cat([token_ids(9, seed=6), token_ids(9, seed=7)])
    with torch.no_grad():
        batch = model(ids, speaker_id=torch.tensor([0, 2]), noise_scale=0.0)
        for row, speaker in enumerate([0, 2]):
            alone = model(ids[row : row + 1], speaker_id=speaker, noise_scale=0.0)
            n = int(alone.sequence_lengths[0])
            assert int(batch.sequence_lengths[row]) == n
            assert max_diff(batch.waveform[row, :n], alone.waveform[0]) <= 1e-5


@pytest.mark.parametrize("speakers", [1, 3])
def test_save_pretrained_loads_in_the_reference(checkpoints, tmp_path, speakers):
    """Saved with weight-norm pairs where the reference has them, in its own key spelling."""
    reference, model = checkpoints(True, speakers)
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    assert set(saved) == set(reference.state_dict())
    pairs = [key for key in saved if key.endswith("parametrizations.weight.original0")]
    wavenets = 1 + TINY_VITS["prior_encoder_num_flows"]  # posterior encoder + one per flow
    convs_per_wavenet = 2 * TINY_VITS["prior_encoder_num_wavenet_layers"] + (speakers > 1)
    assert len(pairs) == wavenets * convs_per_wavenet
    assert all("wavenet" in key for key in pairs)
    assert not any(key.startswith("decoder.") and "parametrizations" in key for key in saved)
    loaded, info = transformers.VitsModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info[kind] for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    again = VitsModel.from_pretrained(tmp_path)
    for name, tensor in model.state_dict().items():
        assert max_diff(again.state_dict()[name], tensor) <= 1e-6, name
    quiet(loaded.eval())
    quiet(reference)
    speaker = 1 if speakers > 1 else None
    with torch.no_grad():
        expected = reference(token_ids(13, seed=8), speaker_id=speaker)
        found = loaded(token_ids(13, seed=8), speaker_id=speaker)
    assert torch.equal(found.sequence_lengths, expected.sequence_lengths)
    assert max_diff(found.waveform, expected.waveform) <= TOLERANCE


@pytest.fixture
def spectral_everywhere(monkeypatch):
    """Every residual conv of the decoder in the frequency domain (tiny models never qualify)."""
    from mmspeech.models.vits import hifigan

    monkeypatch.setattr(hifigan, "SPECTRAL_RULES", ((1, 1),))
    hifigan.spectral_segment.cache_clear()
    yield
    hifigan.spectral_segment.cache_clear()


def test_frequency_domain_decoder_with_autograd_on(checkpoints, spectral_everywhere):
    """Called without no_grad (weights require grad), the decoder gives the same waveform."""
    _, model = checkpoints(False, 1)
    generator = torch.Generator().manual_seed(4)
    spectrogram = torch.randn(2, TINY_VITS["flow_size"], 11, generator=generator)
    recorded = model.decoder(spectrogram)
    assert recorded.requires_grad
    with torch.no_grad():
        assert max_diff(recorded.detach(), model.decoder(spectrogram)) <= 1e-6


@pytest.mark.parametrize("spectral", [False, True])
def test_decoder_time_tiles_are_exact(checkpoints, monkeypatch, request, spectral):
    """Long inputs are decoded in overlapping time tiles: the seams must not show."""
    from mmspeech.models.vits import hifigan

    if spectral:
        request.getfixturevalue("spectral_everywhere")
    reference, model = checkpoints(False, 3)
    generator = torch.Generator().manual_seed(9)
    spectrogram = torch.randn(2, TINY_VITS["flow_size"], 23, generator=generator)
    speakers = model.speaker_embeddings(torch.tensor([0, 2]))
    with torch.no_grad():
        whole = model.decoder(spectrogram, speakers)
        expected = reference.decoder(
            spectrogram, reference.embed_speaker(torch.tensor([0, 2]))[..., None]
        )
        calls = []
        fuse_tile = hifigan.HifiGan._fuse_tile
        monkeypatch.setattr(hifigan, "MIN_TILE", 8)
        monkeypatch.setattr(hifigan, "TILE_VALUES", 1)
        monkeypatch.setattr(
            hifigan.HifiGan, "_fuse_tile", lambda *args: calls.append(1) or fuse_tile(*args)
        )
        tiled = model.decoder(spectrogram, speakers)
    assert len(calls) > 4 * len(TINY_VITS["upsample_rates"])  # really cut into many tiles
    assert max_diff(tiled, whole) <= 1e-6
    assert max_diff(tiled, expected) <= 1e-5
