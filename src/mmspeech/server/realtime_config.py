"""A realtime transcription session's settings as the OpenAI protocol writes them: read from a
``session.update`` in the GA shape (``session: {type: "transcription", audio: {input: {format,
transcription, turn_detection}}}``) or the beta one (``input_audio_format``,
``input_audio_transcription``, ``turn_detection``), and described back in the shape the client
used. Only the fields an update names change (``null`` is a value: it turns turn detection off).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mmspeech.api.options import TranscribeOptions
from mmspeech.server.errors import APIError

RATE = 24_000  # the protocol's PCM16 rate
_UNSET: Any = object()  # a field the update left out


@dataclass(frozen=True)
class TurnDetection:
    """``server_vad`` settings under the protocol's names, mapped onto the stream's rules."""

    # no-speech decision: a segment whose no_speech_prob (blank mass) is above
    # 1 - threshold / 2 is not speech (higher threshold: stricter, as OpenAI's "louder audio")
    threshold: float = 0.5
    prefix_padding_ms: int = 300  # speech_started's audio_start_ms is this much before the words
    # a pause this long ends a turn (TranscribeOptions.min_silence_s)
    silence_duration_ms: int = round(TranscribeOptions().min_silence_s * 1000)

    @property
    def no_speech_threshold(self) -> float:
        return 1.0 - self.threshold / 2

    def to_dict(self) -> dict[str, Any]:
        return {"type": "server_vad", "threshold": self.threshold,
                "prefix_padding_ms": self.prefix_padding_ms,
                "silence_duration_ms": self.silence_duration_ms}  # fmt: skip

    @classmethod
    def parse(cls, value: Any, current: TurnDetection | None) -> TurnDetection | None:
        """A ``turn_detection`` value: null turns it off; fields left out keep their values."""
        if value is None:
            return None
        if not isinstance(value, dict) or value.get("type", "server_vad") != "server_vad":
            raise APIError(400, "turn_detection is null (manual commits) or {\"type\": "
                           "\"server_vad\", ...}; semantic_vad is not served.",
                           "unsupported_turn_detection", "turn_detection")  # fmt: skip
        settings = current or cls()
        try:
            threshold = float(value.get("threshold", settings.threshold))
            padding = int(value.get("prefix_padding_ms", settings.prefix_padding_ms))
            silence = int(value.get("silence_duration_ms", settings.silence_duration_ms))
        except (TypeError, ValueError):
            threshold = padding = silence = -1
        if not 0.0 <= threshold <= 1.0 or padding < 0 or silence < 0:
            raise APIError(400, "turn_detection wants threshold in [0, 1] and non-negative "
                           "prefix_padding_ms and silence_duration_ms.", "invalid_turn_detection",
                           "turn_detection")  # fmt: skip
        return cls(threshold, padding, silence)


@dataclass(frozen=True)
class SessionConfig:
    """What a transcription session runs: model, language, turn detection."""

    model: str | None = None  # a served model name (None or an OpenAI name: the default)
    language: str | None = None  # any form the ASR model takes; None: detected
    turn: TurnDetection | None = TurnDetection()  # None: manual commits only
    shape: str = "ga"  # "ga" or "beta": how the client writes sessions (and reads them back)

    def same_run(self, other: SessionConfig) -> bool:
        """Whether a stream opened with ``other`` runs as one opened with this."""
        return (self.model, self.language, self.turn) == (other.model, other.language, other.turn)

    def update(self, session: Any, beta: bool) -> SessionConfig:
        """This configuration with a ``session.update``'s fields applied (``beta``: the event
        was ``transcription_session.update``)."""
        if not isinstance(session, dict):
            raise APIError(400, "session.update needs a 'session' object.", "invalid_event")
        kind = session.get("type")
        if kind not in (None, "transcription"):
            raise APIError(400, f"Only transcription sessions are served (session.type "
                           f"'transcription'), got {kind!r}.", "unsupported_session_type",
                           "session.type")  # fmt: skip
        shape = "beta" if beta or (kind is None and "audio" not in session) else "ga"
        if shape == "ga":
            audio = _object(session.get("audio"), "session.audio")
            source = _object(audio.get("input"), "session.audio.input")
            audio_format = source.get("format")
            if audio_format is not None and (
                not isinstance(audio_format, dict)
                or audio_format.get("type", "audio/pcm") != "audio/pcm"
                or audio_format.get("rate", RATE) != RATE
            ):
                raise _unsupported_format(audio_format)
            transcription = source.get("transcription", _UNSET)
            turn = source.get("turn_detection", _UNSET)
        else:
            if session.get("input_audio_format", "pcm16") != "pcm16":
                raise _unsupported_format(session.get("input_audio_format"))
            transcription = session.get("input_audio_transcription", _UNSET)
            turn = session.get("turn_detection", _UNSET)
        model, language = self.model, self.language
        if transcription is not _UNSET and transcription is not None:
            transcription = _object(transcription, "transcription")
            model = transcription.get("model", model)
            language = transcription.get("language", language) or None
            if not isinstance(model, (str, type(None))) or not isinstance(
                language, (str, type(None))
            ):
                raise APIError(400, "transcription.model and .language are strings.",
                               "invalid_event", "transcription")  # fmt: skip
        turn_detection = self.turn if turn is _UNSET else TurnDetection.parse(turn, self.turn)
        return SessionConfig(model, language, turn_detection, shape)

    def describe(self, session_id: str, expires_at: int) -> dict[str, Any]:
        """The session as ``session.created``/``updated`` describe it, in the client's shape."""
        turn = None if self.turn is None else self.turn.to_dict()
        transcription = {"model": self.model, "language": self.language}
        common = {"id": session_id, "object": "realtime.transcription_session", "include": [],
                  "expires_at": expires_at}  # fmt: skip
        if self.shape == "beta":
            return {**common, "input_audio_format": "pcm16",
                    "input_audio_transcription": transcription, "turn_detection": turn,
                    "input_audio_noise_reduction": None}  # fmt: skip
        source = {"format": {"type": "audio/pcm", "rate": RATE}, "transcription": transcription,
                  "turn_detection": turn, "noise_reduction": None}  # fmt: skip
        return {**common, "type": "transcription", "audio": {"input": source}}


def _object(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise APIError(400, f"{name} must be an object.", "invalid_event", name)
    return value


def _unsupported_format(given: Any) -> APIError:
    return APIError(400, f"Input audio format {given!r} is not served; send PCM16 at 24 kHz "
                    "(GA: {\"type\": \"audio/pcm\", \"rate\": 24000}; beta: \"pcm16\").",
                    "unsupported_format", "format")  # fmt: skip
