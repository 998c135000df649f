"""CTC prefix beam search with a KenLM word n-gram language model (shallow fusion).

Prefixes (collapsed label sequences) are extended frame by frame; each keeps the probability of
ending in a blank and in a non-blank, so that "aa" (one ``a``) and "a-a" (two) stay apart. When a
word delimiter closes a word, the language model scores it given the previous words. Beams are
ranked by ``log P_ctc + alpha * ln P_lm + beta * words`` (Hannun et al. 2014, "First-pass large
vocabulary continuous speech recognition using bi-directional recurrent DNNs"). With a lexicon, a
word being spelt that no lexicon word starts with is ranked as an unknown word at once, rather
than when it ends, so the spellings the lexicon knows survive a narrow beam. The ``kenlm``
module (extra ``lm``) reads ARPA and binary models; it is imported when a decoder is built.
:meth:`LMDecoder.from_words` needs no model file: it decodes into a closed list of words, all
equally likely (a uniform unigram model written on the fly).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmspeech.ctc.decode import as_log_probs
from mmspeech.errors import CheckpointNotFoundError, ConfigError, MissingDependencyError

logger = logging.getLogger(__name__)

LOG10 = math.log(10.0)  # kenlm scores are log10; the CTC scores are natural logs
MINUS_INF = float("-inf")


@dataclass(frozen=True)
class _LMState:
    """The language-model side of a prefix: context after its completed words, and their score."""

    kenlm_state: Any  # kenlm.State after the last completed word
    score: float  # natural-log LM probability of the completed words
    words: int  # number of completed words
    word_start: int  # the node where the current (unfinished) word starts


class _PrefixTree:
    """Prefixes as nodes of a tree, so a prefix is an int (hashing long tuples is slow)."""

    ROOT = 0

    def __init__(self) -> None:
        self.parent = [-1]
        self.token = [-1]
        self.children: dict[tuple[int, int], int] = {}
        self.lm: dict[int, _LMState] = {}
        self.astray: dict[int, bool] = {}  # the word being spelt starts no lexicon word

    def child(self, node: int, token: int) -> int:
        key = (node, token)
        found = self.children.get(key)
        if found is None:
            found = self.children[key] = len(self.parent)
            self.parent.append(node)
            self.token.append(token)
        return found

    def tokens(self, node: int, stop: int = ROOT) -> list[int]:
        """The tokens from ``stop`` (excluded) down to ``node``."""
        out = []
        while node != stop:
            out.append(self.token[node])
            node = self.parent[node]
        return out[::-1]


class LMDecoder:
    """Beam-search decoder of CTC emissions with a KenLM word language model.

    Args:
        labels: the token of each vocabulary id (``labels[i]`` is the text of id ``i``).
        kenlm_path: an ARPA (``.arpa``) or KenLM binary model over space-separated words.
        alpha: weight of the LM log-probability (0 = acoustic only).
        beta: bonus per word (counters the LM's preference for few words).
        beam_width: prefixes kept per frame.
        blank_id: the CTC blank; by default the id of ``"<pad>"`` or ``""``.
        word_delimiter: the token between words (``"|"`` for wav2vec2; ``" "`` also accepted).
        token_min_logp: tokens below this frame log-probability are not tried (speed), except
            each frame's best token. Letters a word is spelt with but hardly sounds (French
            ``corps``) need room: on the demo checkpoints' development speech, -5 instead of
            -10 raised lexicon decoding's CER from 1.2 to 3.7 % (German), 2.8 to 5.4 % (Russian).
        beam_prune_logp: prefixes ranked this far (natural log) below the best are dropped.
        lexicon: the words transcripts may contain (e.g. the LM's unigrams). A prefix whose
            unfinished word starts none of them is ranked with the LM's ``<unk>`` score.
    """

    def __init__(
        self,
        labels: Sequence[str],
        kenlm_path: str | os.PathLike[str],
        alpha: float = 0.5,
        beta: float = 1.0,
        beam_width: int = 32,
        *,
        blank_id: int | None = None,
        word_delimiter: str = "|",
        token_min_logp: float = -10.0,
        beam_prune_logp: float = 10.0,
        lexicon: Iterable[str] | None = None,
    ) -> None:
        self.labels = list(labels)
        self.blank_id = _find_blank(self.labels) if blank_id is None else blank_id
        if not 0 <= self.blank_id < len(self.labels):
            raise ConfigError(f"blank_id={blank_id} is outside the {len(self.labels)} labels.")
        if beam_width < 1:
            raise ConfigError(f"beam_width must be at least 1, found {beam_width}.")
        self.alpha, self.beta, self.beam_width = alpha, beta, beam_width
        self.token_min_logp, self.beam_prune_logp = token_min_logp, beam_prune_logp
        self.delimiters = {i for i, t in enumerate(self.labels) if t in (word_delimiter, " ")}
        # Special tokens (<s>, </s>, <unk>, ...) never enter a transcript.
        self.skipped = {i for i, t in enumerate(self.labels) if len(t) > 1 and t.startswith("<")}
        self.skipped.add(self.blank_id)
        self.model = _load_kenlm(kenlm_path)
        self.prefixes: set[str] | None = None
        if lexicon is not None:
            lexicon = list(lexicon)
            self.prefixes = {word[:i] for word in lexicon for i in range(len(word) + 1)}
            if len(self.prefixes) < 2:
                raise ConfigError("The lexicon has no words.")
            _warn_unspellable(lexicon, self.labels, self.skipped | self.delimiters)
            import kenlm

            anywhere = kenlm.State()
            self.model.NullContextWrite(anywhere)
            self.unknown_logp = self.model.BaseScore(anywhere, "<unk>", kenlm.State()) * LOG10

    @classmethod
    def from_words(
        cls, labels: Sequence[str], words: Iterable[str], end_prob: float = 0.1, **options: Any
    ) -> LMDecoder:
        """A decoder that spells only ``words``, all equally likely: a uniform unigram model
        over them (see :func:`write_unigram_arpa`) that is also the lexicon. ``options`` are
        the other arguments of :class:`LMDecoder` (``alpha``, ``beta``, ``beam_width``, ...)."""
        try:
            import kenlm  # noqa: F401  (the uniform word model is read by kenlm too)
        except ImportError as exc:
            raise MissingDependencyError(
                "Decoding into only the words of a lexicon (a closed vocabulary) needs the "
                "'kenlm' module: pip install 'mmspeech[lm]'."
            ) from exc
        vocabulary = _distinct_words(words)
        with tempfile.TemporaryDirectory(prefix="mmspeech-lm-") as tmp:
            arpa = Path(tmp) / "words.arpa"
            write_unigram_arpa(arpa, vocabulary, end_prob)
            return cls(labels, arpa, lexicon=vocabulary, **options)  # kenlm reads it whole

    def decode(self, log_probs: Any) -> str:
        """The best transcript of ``(T, V)`` log-probabilities (or logits) of one utterance."""
        return self.text(self.decode_tokens(log_probs))

    def decode_tokens(self, log_probs: Any) -> list[int]:
        """The token ids of the best transcript, one word delimiter between words and none at
        either end: a labelling the emissions can spell, ready for
        :func:`mmspeech.ctc.align.forced_align` (timestamps of the words the LM chose)."""
        scores = as_log_probs(log_probs)
        if scores.shape[1] != len(self.labels):
            raise ConfigError(
                f"The emissions have {scores.shape[1]} classes but the decoder has "
                f"{len(self.labels)} labels: build the LMDecoder with the model's vocabulary."
            )
        tokens = self._search(scores.numpy())
        while tokens and tokens[-1] in self.delimiters:  # the search never starts with one
            tokens.pop()
        return tokens

    def text(self, tokens: Sequence[int]) -> str:
        """The transcript of :meth:`decode_tokens`' ids: words joined by single spaces."""
        text = "".join(" " if t in self.delimiters else self.labels[t] for t in tokens)
        return " ".join(text.split())

    # -- the search ----------------------------------------------------------------------------

    def _search(self, scores: np.ndarray) -> list[int]:
        import kenlm

        tree = _PrefixTree()
        start = kenlm.State()
        self.model.BeginSentenceWrite(start)
        tree.lm[tree.ROOT] = _LMState(start, 0.0, 0, tree.ROOT)
        # prefix node → (log P(prefix, ends in blank), log P(prefix, ends in a token))
        beams: dict[int, tuple[float, float]] = {tree.ROOT: (0.0, MINUS_INF)}
        for row in scores:
            frame = row.tolist()
            candidates = {int(i) for i in np.flatnonzero(row >= self.token_min_logp)}
            candidates.add(int(row.argmax()))
            candidates -= self.skipped
            blank = frame[self.blank_id]
            grown: dict[int, list[float]] = {}
            for node, (p_blank, p_token) in beams.items():
                total = _logaddexp(p_blank, p_token)
                last = tree.token[node]
                _add(grown, node, 0, total + blank)
                for token in candidates:
                    p = frame[token]
                    if token in self.delimiters and (node == tree.ROOT or last in self.delimiters):
                        _add(grown, node, 0, total + p)  # no empty words: stays this prefix
                    elif token == last:
                        _add(grown, node, 1, p_token + p)  # a repeat collapses
                        _add(grown, tree.child(node, token), 1, p_blank + p)  # a blank split it
                    else:
                        _add(grown, tree.child(node, token), 1, total + p)
            ranks = {q: self._rank(tree, q, probs) for q, probs in grown.items()}
            cutoff = max(ranks.values()) - self.beam_prune_logp
            ranked = sorted((q for q in grown if ranks[q] >= cutoff), key=ranks.__getitem__,
                            reverse=True)[: self.beam_width]  # fmt: skip
            beams = {q: (grown[q][0], grown[q][1]) for q in ranked}
        best = max(beams, key=lambda q: self._rank(tree, q, beams[q], final=True))
        return tree.tokens(best)

    def _rank(
        self, tree: _PrefixTree, node: int, probs: Sequence[float], final: bool = False
    ) -> float:
        state = self._lm_state(tree, node)
        score, words = state.score, state.words
        if final:  # the last word, then the end of the sentence
            import kenlm

            context = state.kenlm_state
            word = self._word(tree.tokens(node, stop=state.word_start))
            if word:
                after = kenlm.State()
                score += self.model.BaseScore(context, word, after) * LOG10
                context, words = after, words + 1
            score += self.model.BaseScore(context, "</s>", kenlm.State()) * LOG10
        elif self.prefixes is not None and self._astray(tree, node, state.word_start):
            score += self.unknown_logp
        acoustic = _logaddexp(probs[0], probs[1])
        return acoustic + self.alpha * score + self.beta * words

    def _lm_state(self, tree: _PrefixTree, node: int) -> _LMState:
        """LM state of a prefix, from its parent's (cached: each prefix is scored once)."""
        state = tree.lm.get(node)
        if state is not None:
            return state
        parent = self._lm_state(tree, tree.parent[node])
        state = parent
        if tree.token[node] in self.delimiters:  # a word just ended
            import kenlm

            word = self._word(tree.tokens(tree.parent[node], stop=parent.word_start))
            after = kenlm.State()
            logp = self.model.BaseScore(parent.kenlm_state, word, after) * LOG10
            state = _LMState(after, parent.score + logp, parent.words + 1, node)
        tree.lm[node] = state
        return state

    def _astray(self, tree: _PrefixTree, node: int, word_start: int) -> bool:
        """Whether no lexicon word starts with the unfinished word of a prefix (cached)."""
        found = tree.astray.get(node)
        if found is None:
            assert self.prefixes is not None
            found = self._word(tree.tokens(node, stop=word_start)) not in self.prefixes
            tree.astray[node] = found
        return found

    def _word(self, tokens: Sequence[int]) -> str:
        return "".join(self.labels[t] for t in tokens)


def _add(grown: dict[int, list[float]], node: int, slot: int, logp: float) -> None:
    probs = grown.setdefault(node, [MINUS_INF, MINUS_INF])
    probs[slot] = _logaddexp(probs[slot], logp)


def _logaddexp(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) for Python floats (numpy's is slow on scalars)."""
    if a < b:
        a, b = b, a
    if b == MINUS_INF:
        return a
    return a + math.log1p(math.exp(b - a))


def _find_blank(labels: Sequence[str]) -> int:
    for blank in ("<pad>", ""):
        if blank in labels:
            return labels.index(blank)
    raise ConfigError(
        "Cannot tell the CTC blank: no '<pad>' or '' among the labels; pass blank_id=..."
    )


def write_unigram_arpa(
    path: str | os.PathLike[str], words: Iterable[str], end_prob: float = 0.1
) -> None:
    """Write a uniform unigram language model over ``words`` as an ARPA file.

    Every word gets ``(1 - end_prob) / len(words)``; ``end_prob`` is the probability that the
    transcript ends after a word (0.1: about ten words per window). KenLM reads ARPA files of
    order 2 and up, hence one impossible bigram.
    """
    vocabulary = _distinct_words(words)
    if not vocabulary:
        raise ConfigError("A word language model needs at least one word; the list is empty.")
    if not 0.0 < end_prob < 1.0:
        raise ConfigError(f"end_prob must be in (0, 1), got {end_prob}.")
    special = [w for w in vocabulary if w in ("<s>", "</s>", "<unk>")]
    if special:
        raise ConfigError(f"{special[0]} is a language-model marker, not a word.")
    word_logp = math.log10((1.0 - end_prob) / len(vocabulary))
    lines = ["\\data\\", f"ngram 1={len(vocabulary) + 3}", "ngram 2=1", "", "\\1-grams:",
             f"{math.log10(end_prob):.6f}\t</s>", "-99\t<s>", "-30\t<unk>"]  # fmt: skip
    lines += [f"{word_logp:.6f}\t{word}" for word in vocabulary]
    lines += ["", "\\2-grams:", "-99\t<s> </s>", "", "\\end\\", ""]
    Path(path).write_text("\n".join(lines), encoding="utf-8")


def _distinct_words(words: Iterable[str]) -> list[str]:
    """The distinct whitespace-separated words of ``words``, sorted."""
    return sorted({w for word in words for w in word.split()})


def _warn_unspellable(lexicon: list[str], labels: list[str], skipped: set[int]) -> None:
    """Log the lexicon words the vocabulary cannot spell: they can never be recognised."""
    letters = {label for i, label in enumerate(labels) if i not in skipped}
    missing = [w for w in lexicon if not set(w) <= letters]
    if missing:
        example = missing[0]
        absent = "".join(sorted(set(example) - letters))
        logger.warning(
            "%d of %d lexicon words use characters the model cannot write, so they will never "
            "be recognised (e.g. %r: %r)",
            len(missing), len(lexicon), example, absent,
        )  # fmt: skip


def _load_kenlm(path: str | os.PathLike[str]) -> Any:
    try:
        import kenlm
    except ImportError as exc:
        raise MissingDependencyError(
            "n-gram LM decoding needs the 'kenlm' module: pip install 'mmspeech[lm]'."
        ) from exc
    if not Path(path).is_file():
        raise CheckpointNotFoundError(
            f"KenLM language model not found: {path}. Expected an ARPA (.arpa) or KenLM binary "
            "file; build one with KenLM's lmplz (and build_binary)."
        )
    config = kenlm.Config()
    config.show_progress = False  # the library never prints
    try:
        with _kenlm_notes():
            return kenlm.Model(str(path), config)
    except (OSError, RuntimeError) as exc:
        raise ConfigError(f"Cannot read the KenLM model {path}: {exc}") from exc


KENLM_NOTES = ("Loading the LM will be faster if you build a binary file.",)


@contextlib.contextmanager
def _kenlm_notes() -> Iterator[None]:
    """kenlm's C++ writes notes to the process's stderr ("Loading the LM will be faster if you
    build a binary file." for every ARPA file, ours from :meth:`LMDecoder.from_words` too): they
    become log records. Anything else written to stderr meanwhile is passed on afterwards."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to borrow
        yield
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            others = []
            for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True):
                if line.strip() in KENLM_NOTES:
                    logger.debug("kenlm: %s", line.strip())
                elif line:
                    others.append(line)
            if others:
                os.write(2, "".join(others).encode("utf-8", "replace"))
