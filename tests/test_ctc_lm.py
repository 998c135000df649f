"""n-gram LM decoding: a tiny ARPA model written here pulls an ambiguous decode to an LM word."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mmspeech.ctc import forced_align, greedy_spans
from mmspeech.ctc.lm import LMDecoder, write_unigram_arpa
from mmspeech.errors import CheckpointNotFoundError, ConfigError, MissingDependencyError

pytest.importorskip("kenlm", reason="n-gram LM decoding needs the 'lm' extra (kenlm)")

LABELS = ["<pad>", "<s>", "</s>", "<unk>", "|", "c", "a", "o", "t", "s"]
IDS = {label: i for i, label in enumerate(LABELS)}
ARPA = """\\data\\
ngram 1=5
ngram 2=2

\\1-grams:
-1.0\t<s>\t-0.3
-0.5\t</s>
-0.3\tcat\t-0.3
-0.7\tsat\t-0.3
-3.0\t<unk>

\\2-grams:
-0.1\t<s> cat
-0.1\tcat sat

\\end\\
"""


@pytest.fixture
def arpa(tmp_path):
    path = tmp_path / "tiny.arpa"
    path.write_text(ARPA)
    return path


def emissions(frames: list[str | dict[str, float]]) -> np.ndarray:
    """(T, V) log-probs: a label per frame at 0.9, or a {label: probability} mix."""
    rows = []
    for frame in frames:
        probs = np.full(len(LABELS), 1e-4)
        for label, p in frame.items() if isinstance(frame, dict) else [(frame, 0.9)]:
            probs[IDS[label]] = p
        rows.append(np.log(probs / probs.sum()))
    return np.array(rows, dtype=np.float32)


def greedy_text(log_probs: np.ndarray) -> str:
    text = "".join(LABELS[s.token_id] for s in greedy_spans(log_probs, IDS["<pad>"]))
    return " ".join(text.replace("|", " ").split())


# "c ? t | s a t" where the acoustics slightly prefer "o" over "a".
AMBIGUOUS = ["c", "<pad>", {"o": 0.5, "a": 0.4}, "<pad>", "t", "|", "s", "a", "t", "<pad>"]


def test_the_lm_pulls_an_ambiguous_word_to_the_one_it_knows(arpa):
    log_probs = emissions(AMBIGUOUS)
    assert greedy_text(log_probs) == "cot sat"
    assert LMDecoder(LABELS, arpa, alpha=0.0, beta=0.0).decode(log_probs) == "cot sat"
    assert LMDecoder(LABELS, arpa, alpha=0.5, beta=1.0).decode(log_probs) == "cat sat"


def test_a_lexicon_keeps_known_spellings_in_a_narrow_beam(arpa):
    # one prefix survives each frame: "co" outscores "ca" before the LM can judge the word
    log_probs = emissions(AMBIGUOUS)
    assert LMDecoder(LABELS, arpa, alpha=0.5, beta=1.0, beam_width=1).decode(log_probs) == (
        "cot sat"
    )
    # "co" starts no lexicon word, so it ranks as an unknown word at once and "ca" survives
    decoder = LMDecoder(LABELS, arpa, alpha=0.5, beta=1.0, beam_width=1, lexicon=["cat", "sat"])
    assert decoder.decode(log_probs) == "cat sat"
    # a word the lexicon lacks is still written when the acoustics are clear
    assert decoder.decode(emissions(["c", "o", "t", "|", "s", "a", "t"])) == "cot sat"


def test_a_word_list_alone_is_a_closed_vocabulary(tmp_path, caplog):
    # no model file: a uniform unigram over the words, which are also the lexicon
    decoder = LMDecoder.from_words(LABELS, ["cat", "sat", "toast"], alpha=0.5)
    assert decoder.decode(emissions(AMBIGUOUS)) == "cat sat"
    assert decoder.prefixes is not None and "toa" in decoder.prefixes
    # clear acoustics for a word outside the list still end in listed words or nothing listed
    assert set(decoder.decode(emissions(["c", "o", "t", "|", "s", "a", "t"])).split()) <= {
        "cat", "sat", "toast"
    }  # fmt: skip
    # the ARPA file: every word equally likely, P(</s>) as asked
    path = tmp_path / "words.arpa"
    write_unigram_arpa(path, ["sat", "cat", "cat", "toast"], end_prob=0.25)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert "ngram 1=6" in lines and f"{np.log10(0.25):.6f}\t</s>" in lines
    scores = {line.split("\t")[1]: float(line.split("\t")[0]) for line in lines if "\t" in line}
    assert scores["cat"] == scores["sat"] == scores["toast"] == pytest.approx(np.log10(0.75 / 3))
    # words the labels cannot spell are named: they could never be recognised
    with caplog.at_level("WARNING", logger="mmspeech.ctc.lm"):
        LMDecoder.from_words(LABELS, ["cat", "dog"])
    assert "1 of 2 lexicon words use characters the model cannot write" in caplog.text
    assert "'dog'" in caplog.text
    with pytest.raises(ConfigError, match="needs at least one word"):
        LMDecoder.from_words(LABELS, [" "])
    with pytest.raises(ConfigError, match="<unk> is a language-model marker"):
        write_unigram_arpa(path, ["cat", "<unk>"])


def test_kenlm_notes_become_log_records(arpa, capfd, caplog):
    # kenlm's C++ tells stderr that ARPA files load slower than binaries: a log record instead
    with caplog.at_level("DEBUG", logger="mmspeech.ctc.lm"):
        LMDecoder(LABELS, arpa)
        LMDecoder.from_words(LABELS, ["cat"])
    assert capfd.readouterr().err == ""
    assert caplog.text.count("kenlm: Loading the LM will be faster") == 2


def test_a_letter_spelt_but_hardly_heard_is_still_tried(arpa):
    # "s" peaks at log-probability ~ -6 (a silent letter: French "corps"): the default search
    # tries it and the lexicon + LM restore "sat"; a -5 floor never tries it and writes "at"
    log_probs = emissions(["c", "a", "t", "|", {"<pad>": 0.99, "s": 0.0025}, "a", "t"])
    assert greedy_text(log_probs) == "cat at"
    assert -7 < log_probs[4, IDS["s"]] < -5
    lexicon = ["cat", "sat"]
    assert LMDecoder(LABELS, arpa, alpha=2.0, lexicon=lexicon).decode(log_probs) == "cat sat"
    narrow = LMDecoder(LABELS, arpa, alpha=2.0, lexicon=lexicon, token_min_logp=-5.0)
    assert narrow.decode(log_probs) == "cat at"


def test_the_lm_words_align_to_the_frames_that_say_them(arpa):
    # the tokens the LM chose form a labelling the frames can spell: forced alignment times it
    log_probs = emissions([*AMBIGUOUS, "|", "<pad>"])  # a trailing delimiter is dropped
    decoder = LMDecoder(LABELS, arpa, alpha=0.5, beta=1.0)
    tokens = decoder.decode_tokens(log_probs)
    assert decoder.text(tokens) == "cat sat" == decoder.decode(log_probs)
    assert [LABELS[t] for t in tokens] == list("cat|sat")
    spans = forced_align(log_probs, tokens, IDS["<pad>"])
    assert [(LABELS[s.token_id], s.start_frame, s.end_frame) for s in spans] == [
        ("c", 0, 1), ("a", 2, 3), ("t", 4, 5), ("|", 5, 6), ("s", 6, 7), ("a", 7, 8),
        ("t", 8, 9),
    ]  # fmt: skip
    assert spans[1].probability == pytest.approx(np.exp(log_probs[2, IDS["a"]]))  # not "o"
    assert decoder.decode_tokens(emissions(["<pad>", "|", "<pad>"])) == []


def test_a_clear_acoustic_signal_beats_a_weak_lm(arpa):
    log_probs = emissions(
        [{"o": 0.95, "a": 0.001} if isinstance(f, dict) else f for f in AMBIGUOUS]
    )
    assert LMDecoder(LABELS, arpa, alpha=0.1, beta=0.0).decode(log_probs) == "cot sat"


def test_without_lm_weight_the_beam_agrees_with_greedy_on_peaky_emissions(arpa):
    rng = np.random.default_rng(0)
    frames: list[str | dict[str, float]] = []
    for _ in range(300):
        label = rng.choice(["<pad>", "<pad>", "|", "c", "a", "o", "t", "s"])
        frames += [str(label)] * int(rng.integers(1, 4))
    log_probs = emissions(frames)
    decoder = LMDecoder(LABELS, arpa, alpha=0.0, beta=0.0, beam_width=8)
    assert decoder.decode(log_probs) == greedy_text(log_probs)
    assert len(greedy_text(log_probs)) > 100


def test_repeats_need_a_blank_between_them(arpa):
    decoder = LMDecoder(LABELS, arpa, alpha=0.0, beta=0.0)
    assert decoder.decode(emissions(["s", "a", "a", "t"])) == "sat"
    assert decoder.decode(emissions(["s", "a", "<pad>", "a", "t"])) == "saat"
    assert decoder.decode(np.zeros((0, len(LABELS)), dtype=np.float32)) == ""  # no frames


def test_errors_are_clear(arpa, tmp_path, monkeypatch):
    with pytest.raises(CheckpointNotFoundError, match="KenLM language model not found"):
        LMDecoder(LABELS, tmp_path / "missing.arpa")
    bad = tmp_path / "bad.arpa"
    bad.write_text("not an arpa file\n")
    with pytest.raises(ConfigError, match="Cannot read the KenLM model"):
        LMDecoder(LABELS, bad)
    with pytest.raises(ConfigError, match="10 labels"):
        LMDecoder(LABELS, arpa).decode(np.zeros((4, 7), dtype=np.float32))
    with pytest.raises(ConfigError, match="blank"):
        LMDecoder(["a", "b"], arpa)
    monkeypatch.setitem(sys.modules, "kenlm", None)
    with pytest.raises(MissingDependencyError, match=r"mmspeech\[lm\]"):
        LMDecoder(LABELS, arpa)
