"""``load_speech2text`` and :class:`Speech2TextModel`: speech encoder-decoders (speech translation).

Token ids become text through the checkpoint's text tokenizer (extra ``text``) or, failing that,
its bare ``vocab.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from mmspeech.api.longform import batched
from mmspeech.api.options import (
    DEFAULT_SPEECH2TEXT_MODEL,
    SAMPLE_RATE,
    TranslateOptions,
    with_overrides,
)
from mmspeech.api.source import open_audio
from mmspeech.checkpoints.options import LoadOptions, load_options
from mmspeech.errors import CheckpointNotFoundError
from mmspeech.results import Segment, Transcription

if TYPE_CHECKING:
    from mmspeech.models.speech_encoder_decoder import SpeechEncoderDecoderModel
    from mmspeech.processing.feature_extraction import Wav2Vec2FeatureExtractor

DecodeFn = Callable[[list[int]], str]


class Speech2TextModel:
    """A speech encoder-decoder checkpoint with its feature extractor and text decoding."""

    def __init__(
        self,
        model: SpeechEncoderDecoderModel,
        feature_extractor: Wav2Vec2FeatureExtractor,
        decode: DecodeFn,
        *,
        ref: str = "",
    ):
        self.model = model.eval()
        self.feature_extractor = feature_extractor
        self.decode = decode
        self.ref = ref

    def translate(
        self,
        audio: Any,
        num_beams: int | None = None,
        max_new_tokens: int | None = None,
        options: TranslateOptions | None = None,
    ) -> Transcription:
        """Text of ``audio`` (its translation, for a translation checkpoint).

        Audio longer than ``options.window_s`` is decoded window by window (one segment each).
        ``language`` of the result is None: the target language is the checkpoint's.
        """
        options = with_overrides(
            options or TranslateOptions(), num_beams=num_beams, max_new_tokens=max_new_tokens
        )
        source = open_audio(audio)
        window = int(options.window_s * SAMPLE_RATE)
        starts = range(0, source.num_samples, window)
        segments: list[Segment] = []
        for batch in batched(starts, 4):
            clips = [source.read(start, start + window) for start in batch]
            inputs = self.feature_extractor(
                clips, sampling_rate=SAMPLE_RATE, padding=True, return_tensors="pt"
            )
            values = inputs["input_values"].to(self.model.device, self.model.dtype)
            mask = inputs.get("attention_mask")
            generate: dict[str, Any] = {"num_beams": options.num_beams}
            if options.max_new_tokens is not None:
                generate["max_new_tokens"] = options.max_new_tokens
            with torch.inference_mode():
                ids = self.model.generate(
                    values, None if mask is None else mask.to(values.device), **generate
                )
            for start, clip, row in zip(batch, clips, ids.tolist(), strict=True):
                text = self.decode(row).strip()
                end = start + len(clip)
                segments.append(
                    Segment(len(segments), start / SAMPLE_RATE, end / SAMPLE_RATE, text)
                )
        text = " ".join(segment.text for segment in segments if segment.text)
        return Transcription(text, None, None, source.duration, segments)


def text_decoder(files: Any, special_ids: set[int], **hub_kwargs: Any) -> DecodeFn:
    """ids -> text with the checkpoint's text tokenizer (``tokenizer.json``, BERT, GPT-2,
    mBART layouts: :class:`~mmspeech.processing.text_tokenizer.TextTokenizer`), else with a bare
    ``vocab.json`` (tokens joined; ``▁``/``Ġ`` word markers become spaces, ``@@`` joins)."""
    from mmspeech.processing.text_tokenizer import TextTokenizer, has_text_tokenizer

    if has_text_tokenizer(files):
        tokenizer = TextTokenizer.from_pretrained(files.ref, **hub_kwargs)
        return lambda ids: str(tokenizer.decode(ids, skip_special_tokens=True))
    path = files.path("vocab.json")
    if path is None:
        raise CheckpointNotFoundError(
            f"{files.ref} has no tokenizer files (tokenizer.json, vocab.txt, merges.txt, "
            "sentencepiece.bpe.model or vocab.json), so its output tokens cannot be turned into "
            "text; add the tokenizer files of its text decoder."
        )
    vocab = json.loads(path.read_text(encoding="utf-8"))
    names = {int(index): token for token, index in vocab.items()}

    def decode(ids: list[int]) -> str:
        tokens = [names.get(i, "") for i in ids if i not in special_ids]
        text = "".join(tokens).replace("@@", "\0").replace("▁", " ").replace("Ġ", " ")
        return " ".join(text.replace("\0 ", "").replace("\0", "").split())

    return decode


def load_speech2text(
    ref: str | os.PathLike[str] = DEFAULT_SPEECH2TEXT_MODEL,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    *,
    options: LoadOptions | None = None,
    **load_kwargs: Any,
) -> Speech2TextModel:
    """Load a combined speech encoder-decoder checkpoint (e.g.
    ``facebook/wav2vec2-xls-r-300m-en-to-15``) with its feature extractor and tokenizer files.

    ``options`` / ``load_kwargs``: :class:`LoadOptions` (``compute_type``, hub settings), as
    for :func:`load_asr`.
    """
    from mmspeech.checkpoints.resolve import resolve
    from mmspeech.models.speech_encoder_decoder import SpeechEncoderDecoderModel
    from mmspeech.processing.feature_extraction import Wav2Vec2FeatureExtractor

    load = load_options(options, device=device, dtype=dtype, **load_kwargs)
    load = replace(load, device=str(load.torch_device()))
    model = SpeechEncoderDecoderModel.from_pretrained(ref, load_options=load)
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(ref, **load.hub)
    config = model.config
    specials = {config.pad_token_id, config.decoder_start_token_id}
    eos = config.eos_token_id
    specials |= set(eos) if isinstance(eos, list) else {eos}
    decoder = config.decoder
    for name in ("bos_token_id", "pad_token_id", "eos_token_id", "decoder_start_token_id"):
        value = getattr(decoder, name, None)
        if isinstance(value, int):
            specials.add(value)
    ids = {i for i in specials if isinstance(i, int)}
    decode = text_decoder(resolve(ref, **load.hub), ids, **load.hub)
    return Speech2TextModel(model, extractor, decode, ref=str(ref))
