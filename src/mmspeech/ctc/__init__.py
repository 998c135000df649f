"""CTC decoding without a model: windows for long audio, greedy and LM decoding, forced alignment.

Pure functions over ``(frames, vocab)`` emissions; nothing here loads a model.
"""

from mmspeech.ctc.align import forced_align, min_frames, viterbi_path
from mmspeech.ctc.decode import TokenSpan, greedy_spans, spans_to_words
from mmspeech.ctc.windows import Window, iter_windows, keep_frames, samples_per_frame

__all__ = [
    "TokenSpan",
    "Window",
    "forced_align",
    "greedy_spans",
    "iter_windows",
    "keep_frames",
    "min_frames",
    "samples_per_frame",
    "spans_to_words",
    "viterbi_path",
]
