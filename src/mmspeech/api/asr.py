"""``load_asr`` and :class:`ASRModel`: speech recognition of any length, in any adapter language.

``transcribe`` = language routing (given, or detected by a language-ID model restricted to the
checkpoint's adapter languages) + lazy long-form segments (optional voice-activity regions, fixed
windows with context whose CTC frames are stitched, segments cut at pauses) + word timestamps.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mmspeech.api import transcript
from mmspeech.api.longform import Piece, batched, cut_segments, iter_emissions
from mmspeech.api.options import DEFAULT_ASR_MODEL, SAMPLE_RATE, TranscribeOptions
from mmspeech.api.source import AudioSource, open_audio
from mmspeech.checkpoints.options import LoadOptions, load_options, local_only
from mmspeech.ctc.align import forced_align
from mmspeech.ctc.decode import TokenSpan, greedy_spans, spans_to_words
from mmspeech.errors import CheckpointNotFoundError, ConfigError, LanguageError
from mmspeech.results import LanguageScores, Segment, Transcription, Word, compression_ratio

if TYPE_CHECKING:
    from mmspeech.api.lid import LIDModel
    from mmspeech.api.streaming import StreamingTranscriber
    from mmspeech.models.wav2vec2 import Wav2Vec2ForCTC
    from mmspeech.processing.processor import Wav2Vec2Processor

logger = logging.getLogger(__name__)

LIDProvider = Callable[[str], "LIDModel"]  # LID checkpoint reference -> a loaded LIDModel


class ASRModel:
    """A CTC speech-recognition checkpoint with its processor, ready to transcribe.

    Build it with :func:`load_asr`. The adapter language is switched as needed (one switch per
    language change; adapters read once stay in memory).
    """

    def __init__(
        self,
        model: Wav2Vec2ForCTC,
        processor: Wav2Vec2Processor,
        *,
        ref: str = "",
        load: LoadOptions | None = None,
        lid: LIDProvider | None = None,
    ):
        """
        Args:
            model, processor: a CTC model and its processor.
            ref: what the model was loaded from (for messages).
            load: how it was loaded; a language-ID model it needs is loaded the same way.
            lid: where language ID comes from when no language is given: a function from a
                checkpoint reference (``TranscribeOptions.lid_model``) to a :class:`LIDModel`.
                None: loaded on first use and kept by this object.
        """
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.ref = ref
        self.load = load or LoadOptions()
        self.lid_provider: LIDProvider = lid or _OwnLIDModels(self)
        self.samples_per_frame = int(model.config.inputs_to_logits_ratio)
        self.seconds_per_frame = self.samples_per_frame / SAMPLE_RATE
        self._min_samples = _receptive_field(model)
        self._lm: Any = None
        self._lm_key: tuple[Any, ...] | None = None

    # -- languages -------------------------------------------------------------------------------

    @property
    def languages(self) -> list[str]:
        """Adapter languages (ISO 639-3 / MMS codes); empty for a single-language checkpoint."""
        return list(self.tokenizer.languages)

    @property
    def language(self) -> str | None:
        """The language of the loaded adapter and vocabulary (None for a flat vocabulary)."""
        return self.tokenizer.target_lang if self.languages else None

    def set_language(self, language: str) -> str:
        """Switch adapter and vocabulary to ``language`` (any form languages.py resolves).

        Returns:
            The checkpoint's code for it (e.g. ``"fra"`` for ``"French"``).
        """
        from mmspeech.languages import resolve_language

        if not self.languages:
            raise LanguageError(
                f"{self.ref or 'This checkpoint'} has one vocabulary and no language adapters; "
                f"leave the language unset instead of {language!r}."
            )
        code = resolve_language(language, self.languages)
        if code != self.tokenizer.target_lang or getattr(self.model, "target_lang", None) != code:
            logger.info("switching the adapter to %s", code)
            self.model.load_adapter(code)
            self.model.target_lang = code
            self.tokenizer.set_target_lang(code)
        return code

    def detect_language(
        self, audio: Any, options: TranscribeOptions | None = None, lid: LIDModel | None = None
    ) -> LanguageScores:
        """Language ID on the first ``lid_seconds`` (of speech, with ``vad=True``), restricted to
        this checkpoint's languages.

        The codes returned are this checkpoint's adapter codes (``cmn-script_simplified`` when the
        LID model says ``cmn``). The LID model's favourite over all its labels is reported as
        ``unsupported`` when it has no adapter (see :func:`transcript.decide_language`).
        """
        options = options or TranscribeOptions()
        lid, mapping = self._lid(options, lid)
        clip = transcript.lid_clip(open_audio(audio), options)
        heard = lid.identify(clip, top_k=len(lid.languages))  # all labels: see what was heard
        return transcript.decide_language(
            heard, mapping, len(clip) / SAMPLE_RATE, options, self.ref
        )

    def detect_languages(
        self, audios: Sequence[Any], options: TranscribeOptions | None = None
    ) -> list[LanguageScores]:
        """:meth:`detect_language` for many inputs, ``batch_size`` clips per LID forward."""
        options = options or TranscribeOptions()
        lid, mapping = self._lid(options, None)
        out = []
        for batch in batched(audios, options.batch_size):
            clips = [transcript.lid_clip(open_audio(audio), options) for audio in batch]
            for clip, heard in zip(
                clips, lid.identify_batch(clips, len(lid.languages)), strict=True
            ):
                seconds = len(clip) / SAMPLE_RATE
                out.append(transcript.decide_language(heard, mapping, seconds, options, self.ref))
        return out

    def _lid(self, options: TranscribeOptions, lid: LIDModel | None) -> tuple[Any, dict[str, str]]:
        """The LID model and its label -> adapter code mapping."""
        if not self.languages:
            raise LanguageError(
                f"{self.ref or 'This checkpoint'} has no language adapters to choose from; "
                "transcribe without a language."
            )
        if lid is None:
            lid = self.lid_provider(options.lid_model)
        mapping = _lid_to_asr(lid.languages, self.languages)
        if not mapping:
            raise LanguageError(
                f"None of the {len(lid.languages)} languages of the language-ID model "
                f"{lid.ref!r} has an adapter in {self.ref!r}; pass the language explicitly."
            )
        return lid, mapping

    # -- transcription ---------------------------------------------------------------------------

    def transcribe(
        self,
        audio: Any,
        language: str | None = None,
        word_timestamps: bool = False,
        options: TranscribeOptions | None = None,
        *,
        on_segment: Callable[[Segment], None] | None = None,
    ) -> Transcription:
        """Transcribe one input of any length.

        Args:
            audio: a path, bytes, binary file object or 1-D float array at 16 kHz.
            language: adapter language in any form (``fra``, ``fr``, ``French``); None detects it.
            word_timestamps: fill ``Segment.words`` with timed words.
            options: see :class:`TranscribeOptions`.
            on_segment: called with each segment as soon as it is done (progress reporting).
        """
        options = options or TranscribeOptions()
        source = open_audio(audio)
        code, detection = self._route(source, language, options)
        meter = transcript.BlankMeter(self.tokenizer.pad_token_id)
        segments = []
        for segment in self._segments(source, word_timestamps, options, meter):
            segments.append(segment)
            if on_segment is not None:
                on_segment(segment)
        return transcript.assemble(segments, code, detection, source.duration, options, meter)

    def iter_segments(
        self,
        audio: Any,
        language: str | None = None,
        word_timestamps: bool = False,
        options: TranscribeOptions | None = None,
    ) -> Iterator[Segment]:
        """The segments of ``audio`` one by one, computed as they are consumed (bounded memory)."""
        source = open_audio(audio)
        self._route(source, language, options)
        yield from self._segments(source, word_timestamps, options or TranscribeOptions())

    def transcribe_batch(
        self,
        audios: Sequence[Any],
        language: str | None = None,
        word_timestamps: bool = False,
        options: TranscribeOptions | None = None,
    ) -> list[Transcription]:
        """Transcribe many inputs: grouped by language (one adapter switch per group), short
        inputs batched by length; long ones go through the long-form path one by one."""
        options = options or TranscribeOptions()
        sources = [open_audio(audio) for audio in audios]
        routes: list[tuple[str | None, LanguageScores | None]] = [(language, None)] * len(sources)
        if language is None and self.languages:
            detected = self.detect_languages(sources, options)
            routes = [(scores.language, scores) for scores in detected]
        results: list[Transcription | None] = [None] * len(sources)
        for lang in dict.fromkeys(route[0] for route in routes):
            members = [i for i, route in enumerate(routes) if route[0] == lang]
            code = self.set_language(lang) if lang is not None else self.language
            window = int(options.window_s * SAMPLE_RATE)
            short = sorted(
                (i for i in members if sources[i].num_samples <= window),
                key=lambda i: sources[i].num_samples,
            )
            for batch in batched(short, options.batch_size):
                waves = [sources[i].load() for i in batch]
                for i, log_probs in zip(batch, self._emit(waves), strict=True):
                    meter = transcript.BlankMeter(self.tokenizer.pad_token_id)
                    pieces = self._pieces(meter.watch([log_probs]), 0.0, options)
                    segments = self._to_segments(pieces, word_timestamps, options)
                    results[i] = transcript.assemble(
                        segments, code, routes[i][1], sources[i].duration, options, meter
                    )
            for i in (i for i in members if sources[i].num_samples > window):
                meter = transcript.BlankMeter(self.tokenizer.pad_token_id)
                long_form = self._segments(sources[i], word_timestamps, options, meter)
                results[i] = transcript.assemble(
                    long_form, code, routes[i][1], sources[i].duration, options, meter
                )
        return [result for result in results if result is not None]

    # -- pieces ----------------------------------------------------------------------------------

    def _route(
        self, source: AudioSource, language: str | None, options: TranscribeOptions | None
    ) -> tuple[str | None, LanguageScores | None]:
        """Set the adapter for ``language`` (detected when None); returns (code, LID result)."""
        if language is not None:
            return self.set_language(language), None
        if not self.languages:
            return None, None
        scores = self.detect_language(source, options)
        logger.info("detected language %s (p=%.2f)", scores.language, scores.probability)
        return self.set_language(scores.language), scores

    def _segments(
        self,
        source: AudioSource,
        word_timestamps: bool,
        options: TranscribeOptions,
        meter: transcript.BlankMeter | None = None,
    ) -> Iterator[Segment]:
        """Segments of the audio (its speech regions with ``vad=True``), blank mass metered."""
        meter = meter or transcript.BlankMeter(self.tokenizer.pad_token_id)
        if options.vad:
            from mmspeech.api.vad import speech_regions

            regions: Any = speech_regions(source, options)
        else:
            regions = [(0, source.num_samples)]
        pieces = (
            piece
            for start, end in regions
            for piece in self._pieces(
                meter.watch(self.emissions(source, start, end, options)),
                start / SAMPLE_RATE,
                options,
            )
        )
        yield from self._to_segments(pieces, word_timestamps, options)

    def _pieces(
        self, emissions: Iterable[torch.Tensor], offset_s: float, options: TranscribeOptions
    ) -> Iterator[Piece]:
        """Stitched frames cut at pauses (blank or word-delimiter frames) and ``max_segment_s``."""
        tokenizer = self.tokenizer
        silence = {tokenizer.pad_token_id, tokenizer.word_delimiter_token_id} - {None}
        return cut_segments(
            emissions, self._words, offset_s=offset_s, seconds_per_frame=self.seconds_per_frame,
            min_silence_s=options.min_silence_s, max_segment_s=options.max_segment_s,
            silence_ids={int(i) for i in silence},
        )  # fmt: skip

    def _to_segments(
        self, pieces: Any, word_timestamps: bool, options: TranscribeOptions
    ) -> Iterator[Segment]:
        decoder = self.lm_decoder(options)
        index = 0
        for piece in pieces:
            piece_: Piece = piece
            avg_logprob, no_speech = transcript.path_scores(piece_, self.tokenizer.pad_token_id)
            threshold = options.no_speech_threshold
            if threshold is not None and no_speech > threshold:
                logger.info("dropped a segment at %.2f s (no_speech_prob %.2f)",
                            piece_.offset_s, no_speech)  # fmt: skip
                continue
            spans = None  # the greedy path's
            start, end = piece_.words[0].start, piece_.words[-1].end
            if decoder is not None:
                tokens = decoder.decode_tokens(piece_.log_probs)
                text = decoder.text(tokens)
                if tokens and (word_timestamps or options.char_timestamps):
                    # the LM's words placed on the frames by the best CTC path that spells them
                    blank = self.tokenizer.pad_token_id
                    spans = forced_align(piece_.log_probs, tokens, blank)
            else:
                text = " ".join(word.text for word in piece_.words)
            words: tuple[Word, ...] = ()
            if word_timestamps:
                words = tuple(
                    piece_.words if spans is None else self._timed(spans, piece_.offset_s)
                )
                if words:
                    start, end = min(start, words[0].start), max(end, words[-1].end)
            chars: tuple[Word, ...] = ()
            if options.char_timestamps:
                chars = transcript.char_words(piece_, spans, self.tokenizer, self.seconds_per_frame)
            ratio = compression_ratio(text)
            yield Segment(index, start, end, text, words, chars, avg_logprob, no_speech, ratio)
            index += 1

    def emissions(
        self,
        audio: Any,
        start: int = 0,
        end: int | None = None,
        options: TranscribeOptions | None = None,
    ) -> Iterator[torch.Tensor]:
        """Stitched ``(T_w, V)`` float32 log-probs of samples ``[start, end)``, window by window."""
        options = options or TranscribeOptions()
        source = open_audio(audio)
        end = source.num_samples if end is None else end
        return iter_emissions(
            source, start, end, self._emit,
            window_s=options.window_s, context_s=options.context_s,
            batch_size=options.batch_size, samples_per_frame=self.samples_per_frame,
        )  # fmt: skip

    def _emit(self, waveforms: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """One forward pass over a batch: a ``(T_b, V)`` log-prob tensor per waveform."""
        lengths = [max(len(w), self._min_samples) for w in waveforms]
        padded = [np.pad(w, (0, n - len(w))) for w, n in zip(waveforms, lengths, strict=True)]
        inputs = self.processor.feature_extractor(
            padded, sampling_rate=SAMPLE_RATE, padding=True, return_tensors="pt"
        )
        values = inputs["input_values"].to(self.model.device, self.model.dtype)
        mask = inputs.get("attention_mask")
        if mask is not None:
            mask = mask.to(self.model.device)
        with torch.inference_mode():
            logits = self.model(values, mask).logits
        log_probs = torch.log_softmax(logits.float(), dim=-1).cpu()  # (B, T, V)
        frames = self.model.base.frame_lengths(torch.tensor(lengths)).tolist()
        return [log_probs[i, : int(frames[i])] for i in range(len(waveforms))]

    def _words(self, log_probs: torch.Tensor, offset_s: float) -> list[Word]:
        blank = self.tokenizer.pad_token_id
        return self._timed(greedy_spans(log_probs, blank), offset_s)

    def _timed(self, spans: Sequence[TokenSpan], offset_s: float) -> list[Word]:
        """The words of token spans, in seconds from frame 0 at ``offset_s``."""
        tokenizer = self.tokenizer
        specials = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
        return spans_to_words(
            [s for s in spans if s.token_id not in specials],
            tokenizer.decoder,
            tokenizer.word_delimiter_token or "|",
            self.seconds_per_frame,
            offset_s,
        )

    def lm_decoder(self, options: TranscribeOptions) -> Any:
        """The LM decoder (``mmspeech.ctc.lm.LMDecoder``) these options decode with, built once
        per LM file, lexicon, weights and language; None without ``lm_path``/``lm_lexicon``."""
        if options.lm_path is None and options.lm_lexicon is None:
            return None
        key = (
            options.lm_path,
            options.lm_lexicon,
            options.lm_alpha,
            options.lm_beta,
            options.beam_width,
            self.language,
        )
        if key != self._lm_key:
            from mmspeech.ctc.lm import LMDecoder

            decoder = self.tokenizer.decoder
            labels = [decoder[i] for i in range(len(decoder))]
            lexicon = None
            if options.lm_lexicon is not None:
                try:
                    lexicon = Path(options.lm_lexicon).read_text(encoding="utf-8").split()
                except (OSError, UnicodeDecodeError) as exc:
                    raise ConfigError(
                        f"Cannot read the LM lexicon {options.lm_lexicon} (a UTF-8 text file of "
                        f"words): {exc}"
                    ) from exc
                if not lexicon:
                    raise ConfigError(f"The LM lexicon {options.lm_lexicon} has no words.")
            alpha, beta, beam = options.lm_alpha, options.lm_beta, options.beam_width
            if options.lm_path is None:  # a closed list of words, all equally likely
                self._lm = LMDecoder.from_words(
                    labels, lexicon or [], alpha=alpha, beta=beta, beam_width=beam
                )
            else:
                self._lm = LMDecoder(labels, options.lm_path, alpha, beta, beam, lexicon=lexicon)
            self._lm_key = key
        return self._lm

    def stream(
        self,
        language: str | None = None,
        options: TranscribeOptions | None = None,
        word_timestamps: bool = False,
        **settings: Any,
    ) -> StreamingTranscriber:
        """Live transcription: feed audio as it arrives, get partial and final text back.

        ``settings``: ``step_s``, ``left_context_s``, ``lookahead_s``, ``language_after_s``,
        ``stream_options``, ``sample_rate``, ``encoding``, ``lid`` (see
        :class:`mmspeech.api.streaming.StreamingTranscriber`).
        """
        from mmspeech.api.streaming import StreamingTranscriber

        return StreamingTranscriber(self, language, options, word_timestamps, **settings)


def _lid_to_asr(lid_languages: Sequence[str], asr_languages: Sequence[str]) -> dict[str, str]:
    """LID label -> ASR adapter code, for the labels the ASR checkpoint covers.

    Exact codes first; else the first ASR variant of the label
    (``cmn`` -> ``cmn-script_simplified``).
    """
    asr = set(asr_languages)
    mapping = {}
    for label in lid_languages:
        if label in asr:
            mapping[label] = label
            continue
        variants = sorted(code for code in asr if code.split("-")[0] == label)
        if variants:
            mapping[label] = variants[0]
    return mapping


def _receptive_field(model: Any) -> int:
    from mmspeech.models.wav2vec2.model import receptive_field

    return int(receptive_field(model.config))


class _OwnLIDModels:
    """The default LID provider: loads each LID checkpoint once, on the ASR model's device and
    with its load settings, and keeps it with the ASR model (not process-wide)."""

    def __init__(self, asr: ASRModel):
        self._asr = asr
        self._models: dict[str, LIDModel] = {}

    def __call__(self, ref: str) -> LIDModel:
        if ref not in self._models:
            from mmspeech.api.lid import load_lid

            load = replace(self._asr.load, device=str(self._asr.model.device))
            self._models[ref] = load_lid(ref, options=load)
        return self._models[ref]


def load_asr(
    ref: str | os.PathLike[str] = DEFAULT_ASR_MODEL,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    *,
    options: LoadOptions | None = None,
    lid: LIDProvider | None = None,
    **load_kwargs: Any,
) -> ASRModel:
    """Load a CTC checkpoint (directory or hub id) and its processor.

    Args:
        ref: e.g. ``facebook/mms-1b-all``, ``demo`` or a local directory.
        device: ``"cpu"``, ``"cuda"``…; None picks CUDA when available.
        dtype: parameter dtype (``"float16"``, ``torch.bfloat16``…); None is float32.
        options: all load settings in one object (the keywords override its fields).
        lid: see :class:`ASRModel`.
        **load_kwargs: other :class:`LoadOptions` fields: ``compute_type``, ``revision``,
            ``cache_dir``, ``token``, ``local_files_only``.

    When the default ``facebook/mms-1b-all`` is neither cached nor downloadable (offline), the
    bundled mmspeech-demo checkpoint is used instead, with a warning (see ``mmspeech.demo``).
    """
    from mmspeech.demo import offline_fallback

    load = load_options(options, device=device, dtype=dtype, **load_kwargs)
    load = replace(load, device=str(load.torch_device()))
    try:
        return _load_asr(ref, load, lid)
    except CheckpointNotFoundError as error:
        demo = offline_fallback(ref, DEFAULT_ASR_MODEL, "asr", error)
    return _load_asr(demo, local_only(load), lid)


def _load_asr(ref: str | os.PathLike[str], load: LoadOptions, lid: LIDProvider | None) -> ASRModel:
    from mmspeech.auto import AutoModelForCTC
    from mmspeech.processing.processor import Wav2Vec2Processor

    processor = Wav2Vec2Processor.from_pretrained(ref, **load.hub)
    target = processor.tokenizer.target_lang if processor.tokenizer.languages else None
    model = AutoModelForCTC.from_pretrained(ref, target_lang=target, load_options=load)
    return ASRModel(model, processor, ref=str(ref), load=load, lid=lid)
