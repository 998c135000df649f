"""Long-text TTS (API and `mmspeech speak`), speech translation (API and `mmspeech translate`),
voice-activity splitting and LM decoding, on tiny checkpoints."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import espeak

from mmspeech import SynthesisOptions, TranscribeOptions, load_asr, load_speech2text, load_tts
from mmspeech.api.tts import split_sentences
from mmspeech.cli import main
from mmspeech.ctc.lm import LMDecoder
from mmspeech.errors import ConfigError, EmptyTextError

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tts_dir(tmp_path_factory, oracle):
    from test_vits_pipeline import tts_checkpoint

    return tts_checkpoint(tmp_path_factory.mktemp("mms-tts-eng"), "eng", False, seed=0)


TEXT = "Hello there. Is it raining? Yes, it is raining a lot! Good."


def test_split_sentences():
    assert split_sentences(TEXT) == ["Hello there.", "Is it raining?", "Yes, it is raining a lot!",
                                     "Good."]  # fmt: skip
    assert split_sentences("line one\nline two") == ["line one", "line two"]
    long = "alpha beta, gamma delta, epsilon zeta eta theta"
    parts = split_sentences(long, max_chars=16)
    assert all(len(p) <= 16 for p in parts) and " ".join(parts) == long
    assert parts[0] == "alpha beta,"  # a clause boundary is preferred


def test_long_text_synthesis_is_seeded_and_streamable(tts_dir):
    tts = load_tts(tts_dir, device="cpu")
    options = SynthesisOptions(seed=5, batch_size=2, pause_s=0.1)
    whole = tts.synthesize(TEXT, options=options)
    again = tts.synthesize(TEXT, options=options)
    np.testing.assert_array_equal(whole.waveform, again.waveform)
    pieces = list(tts.iter_synthesize(TEXT, options=options))
    assert len(pieces) == 4
    np.testing.assert_array_equal(np.concatenate([p.waveform for p in pieces]), whole.waveform)
    pause = int(0.1 * tts.sample_rate)
    assert all(not p.waveform[:pause].any() for p in pieces[1:])  # each starts with the pause
    assert pieces[0].waveform[:pause].any()
    different = tts.synthesize(TEXT, seed=6, options=options)
    assert not np.array_equal(different.waveform[: len(whole.waveform)], whole.waveform[:100])
    with pytest.raises(EmptyTextError):
        tts.synthesize("!!! ???")


def test_speak_command(tts_dir, tmp_path, capsys):
    out = tmp_path / "speech.wav"
    code = main(["speak", TEXT, "--model", str(tts_dir), "-o", str(out), "--seed", "5",
                 "--batch-size", "2", "--pause", "0.1"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    audio, rate = sf.read(out, dtype="float32")
    tts = load_tts(tts_dir, device="cpu")
    expected = tts.synthesize(TEXT, options=SynthesisOptions(seed=5, batch_size=2, pause_s=0.1))
    assert rate == tts.sample_rate and len(audio) == len(expected.waveform)
    np.testing.assert_allclose(audio, expected.waveform, atol=1e-4)  # PCM_16 in the file
    text_file = tmp_path / "text.txt"
    text_file.write_text("?!")
    capsys.readouterr()
    code = main(["speak", "--text-file", str(text_file), "--model", str(tts_dir),
                 "-o", str(tmp_path / "empty.wav")])  # fmt: skip
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert code == 1 and last.startswith("error: ") and "Nothing to speak" in last


@pytest.fixture(scope="module")
def s2t_dir(tmp_path_factory, oracle):
    """A tiny wav2vec2 + BART checkpoint with a 16-word vocab.json and a feature extractor."""
    from test_speech_encoder_decoder import reference_seq2seq

    directory = tmp_path_factory.mktemp("s2t")
    reference = reference_seq2seq("w2v2-bart-proj", seed=0)
    with torch.no_grad():  # the random model would emit only specials: make words win
        reference.decoder.lm_head.weight[:3] = 0.0
    reference.save_pretrained(directory)
    words = ["<s>", "<pad>", "</s>", *[f"▁w{i}" for i in range(13)]]
    (directory / "vocab.json").write_text(json.dumps({w: i for i, w in enumerate(words)}))
    oracle.Wav2Vec2FeatureExtractor().save_pretrained(directory)
    return directory, reference, words


def test_translate_matches_the_reference_decode(s2t_dir, tmp_path, capsys, oracle):
    directory, reference, words = s2t_dir
    audio = espeak("good morning")
    features = oracle.Wav2Vec2FeatureExtractor()(audio, sampling_rate=16_000,
                                                       return_tensors="pt")  # fmt: skip
    ids = reference.generate(features.input_values, max_new_tokens=8)[0].tolist()
    expected = " ".join(words[i].lstrip("▁") for i in ids if i > 2)
    assert len(expected.split()) >= 4
    model = load_speech2text(directory, device="cpu")
    result = model.translate(audio, max_new_tokens=8)
    assert result.text == expected and result.language is None
    assert len(result.segments) == 1 and result.segments[0].end == pytest.approx(len(audio) / 16e3)
    path = tmp_path / "speech.wav"
    sf.write(path, audio, 16_000, subtype="FLOAT")
    capsys.readouterr()
    code = main(["translate", str(path), "--model", str(directory), "--max-new-tokens", "8"])
    assert code == 0 and capsys.readouterr().out.strip() == expected


def test_vad_regions_follow_the_speech(mms_dir):
    from mmspeech.api.source import open_audio
    from mmspeech.api.vad import speech_regions

    pytest.importorskip("silero_vad")
    talk = espeak("this is one sentence of speech")
    silence = np.zeros(32_000, dtype=np.float32)
    audio = np.concatenate([silence, talk, silence, silence, talk, silence])
    options = TranscribeOptions(vad=True, speech_pad_s=0.1)
    regions = list(speech_regions(open_audio(audio), options))
    assert len(regions) == 2
    first, second = regions
    start_2 = 32_000 + len(talk) + 64_000
    assert 32_000 - 4_000 <= first[0] <= 32_000 + 8_000 and first[1] <= start_2
    assert start_2 - 4_000 <= second[0] <= start_2 + 8_000
    assert second[1] <= len(audio)
    asr = load_asr(mms_dir, device="cpu")
    segments = list(asr.iter_segments(audio, "eng", options=options))
    assert segments and all(
        any(s / 16e3 - 0.02 <= seg.start and seg.end <= e / 16e3 + 0.02 for s, e in regions)
        for seg in segments
    )
    assert asr.transcribe(np.zeros(48_000, np.float32), "eng", options=options).segments == []


def test_lm_decoding(mms_dir, tmp_path):
    pytest.importorskip("kenlm")
    arpa = tmp_path / "words.arpa"
    arpa.write_text(
        "\\data\\\nngram 1=4\nngram 2=2\n\n\\1-grams:\n-1.0\t<unk>\t0\n0\t<s>\t-0.3\n"
        "-0.5\t</s>\t0\n-0.3\tthe\t-0.2\n\n\\2-grams:\n-0.1\t<s> the\n-0.2\tthe the\n\n"
        "\\end\\\n"
    )
    asr = load_asr(mms_dir, device="cpu")
    audio = espeak("the the the")
    plain = asr.transcribe(audio, "eng")
    with_lm = asr.transcribe(audio, "eng", options=TranscribeOptions(lm_path=str(arpa)))
    assert with_lm.segments and [s.start for s in with_lm.segments] == [
        s.start for s in plain.segments
    ]
    # one segment, so its text is the LM beam search's over all the emissions
    defaults = TranscribeOptions()
    decoder = LMDecoder(
        [asr.tokenizer.decoder[i] for i in range(len(asr.tokenizer.decoder))], arpa,
        defaults.lm_alpha, defaults.lm_beta, defaults.beam_width,
    )  # fmt: skip
    assert len(plain.segments) == 1
    assert with_lm.text == decoder.decode(torch.cat(list(asr.emissions(audio))))
    assert with_lm.text != plain.text  # the LM changed the transcript
    # timestamps of the words the LM chose, from the CTC path that spells them
    options = TranscribeOptions(lm_path=str(arpa), char_timestamps=True)
    timed = asr.transcribe(audio, "eng", word_timestamps=True, options=options)
    assert timed.text == with_lm.text
    for segment in timed.segments:
        assert " ".join(w.text for w in segment.words) == segment.text
        assert "".join(c.text for c in segment.chars) == segment.text.replace(" ", "")
        times = [(w.start, w.end) for w in segment.words]
        assert all(start < end for start, end in times)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(times))
        assert segment.start <= times[0][0] and times[-1][1] <= segment.end
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("the\n")
    spelt = asr.transcribe(
        audio, "eng", options=TranscribeOptions(lm_path=str(arpa), lm_lexicon=str(lexicon))
    )
    spelt_options = TranscribeOptions(lm_path=str(arpa), lm_lexicon=str(lexicon))
    assert asr.lm_decoder(spelt_options).prefixes == {"", "t", "th", "the"}
    assert [s.start for s in spelt.segments] == [s.start for s in plain.segments]
    missing = TranscribeOptions(lm_path=str(arpa), lm_lexicon=str(tmp_path / "missing.txt"))
    with pytest.raises(ConfigError, match=r"Cannot read the LM lexicon .*missing\.txt"):
        asr.transcribe(audio, "eng", options=missing)
    # a lexicon without a model file: transcripts use only its words
    closed = asr.transcribe(audio, "eng", options=TranscribeOptions(lm_lexicon=str(lexicon)))
    assert asr.lm_decoder(TranscribeOptions(lm_lexicon=str(lexicon))).prefixes == {
        "", "t", "th", "the"
    }  # fmt: skip
    assert closed.segments and set(closed.text.split()) == {"the"}
    assert set(plain.text.split()) != {"the"}  # the tiny random model alone says other things
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match=r"LM lexicon .*empty\.txt has no words"):
        asr.transcribe(audio, "eng", options=TranscribeOptions(lm_lexicon=str(empty)))


def test_translate_uses_the_checkpoints_text_tokenizer(s2t_dir, tmp_path, oracle):
    tokenizers = pytest.importorskip("tokenizers")
    _, reference, words = s2t_dir
    with_json = tmp_path / "s2t-json"
    reference.save_pretrained(with_json)
    oracle.Wav2Vec2FeatureExtractor().save_pretrained(with_json)
    vocab = {w.lstrip("▁"): i for i, w in enumerate(words)}
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<pad>"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = tokenizers.decoders.WordPiece()  # joins with spaces
    tokenizer.add_special_tokens(["<s>", "<pad>", "</s>"])
    tokenizer.save(str(with_json / "tokenizer.json"))
    audio = espeak("good morning")
    features = oracle.Wav2Vec2FeatureExtractor()(audio, sampling_rate=16_000,
                                                       return_tensors="pt")  # fmt: skip
    ids = reference.generate(features.input_values, max_new_tokens=8)[0].tolist()
    expected = tokenizer.decode(ids, skip_special_tokens=True)
    assert expected.strip()
    result = load_speech2text(with_json, device="cpu").translate(audio, max_new_tokens=8)
    assert result.text == expected.strip()


def test_language_is_detected_on_speech_with_vad(mms_dir, tmp_path, monkeypatch):
    pytest.importorskip("silero_vad")
    from conftest import build_lid_checkpoint

    from mmspeech.api.lid import LIDModel
    from mmspeech.api.source import open_audio
    from mmspeech.api.vad import speech_regions

    heard = []
    identify = LIDModel.identify

    def spy(self, audio, *args, **kwargs):
        heard.append(len(audio))
        return identify(self, audio, *args, **kwargs)

    monkeypatch.setattr(LIDModel, "identify", spy)
    talk = espeak("language identification listens to speech")
    audio = np.concatenate([np.zeros(48_000, np.float32), talk, np.zeros(48_000, np.float32)])
    lid = build_lid_checkpoint(tmp_path / "lid", favour="fra")
    options = TranscribeOptions(vad=True, lid_model=str(lid))
    result = load_asr(mms_dir, device="cpu").transcribe(audio, options=options)
    assert result.language == "fra"
    [(start, end)] = speech_regions(open_audio(audio), options)
    assert heard == [end - start]  # the speech, not the 3 s of silence before it
