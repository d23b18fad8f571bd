"""Dense vectors of candidate pairs from a pretrained encoder: one encoder pass per sentence, both ends pooled from it.

A pair's vector is four means of the sentence's word-piece states (all-MiniLM-L6-v2, pipeline/stance/encoder.py):
over the holder's mention, over the target's mention (a pronoun's own token when one stands in), over the words
between the two, and over the whole sentence. Each sentence holding a candidate is encoded once per document,
all of a document's sentences in one batched call.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy
from spacy.tokens import Doc, Span

from pipeline.stance.encoder import Encoder, model_version
from pipeline.stance.features import Candidate

DIM = 384  # all-MiniLM-L6-v2's hidden size
POOLS = ("holder", "target", "between", "sentence")
WIDTH = len(POOLS) * DIM
MAX_PIECES = 128  # word pieces per sentence; a longer sentence is cut (a mention past the cut pools to zeros)


@functools.cache
def encoder() -> Encoder:
    """The packaged encoder, loaded once per process."""
    return Encoder.load()


@functools.cache
def encoder_name() -> str:
    """What a model records of the encoder and pooling it was trained with; a model refuses another."""
    return f"all-MiniLM-L6-v2@{model_version()}/{'+'.join(POOLS)}/{MAX_PIECES}"


def _mean(states: numpy.ndarray, mask: numpy.ndarray) -> numpy.ndarray:
    """Mean of the rows of `states` selected by `mask`; zeros when none is."""
    return states[mask].mean(axis=0) if mask.any() else numpy.zeros(states.shape[1], dtype=states.dtype)


class _Sentence:
    """One encoded sentence: its word-piece states, their document character spans and the sentence's mean."""

    def __init__(self, sent: Span, states: numpy.ndarray, offsets: Sequence[tuple[int, int]]) -> None:
        self.states = states
        self.starts = numpy.array([a for a, _ in offsets]) + sent.start_char
        self.ends = numpy.array([b for _, b in offsets]) + sent.start_char
        self.real = self.ends > self.starts  # [CLS] and [SEP] have an empty span
        self.mean = _mean(states, self.real)

    def pooled(self, lo: int, hi: int) -> numpy.ndarray:
        """The mean of the pieces overlapping document characters [lo, hi)."""
        return _mean(self.states, self.real & (self.starts < hi) & (self.ends > lo))


def pair_vectors(doc: Doc, cands: Sequence[Candidate], enc: Encoder | None = None) -> numpy.ndarray:
    """One row of WIDTH floats per candidate, from one encoder pass over each sentence the candidates are in."""
    out = numpy.zeros((len(cands), WIDTH), dtype=numpy.float32)
    if not cands:
        return out
    of_cand = [doc[cand.at].sent for cand in cands]
    sentences = {sent.start: sent for sent in of_cand}
    order = sorted(sentences)
    encoded = (enc or encoder()).encode([sentences[s].text for s in order], max_length=MAX_PIECES)
    by_start = {s: _Sentence(sentences[s], states, offsets) for s, (states, offsets) in zip(order, encoded, strict=True)}
    for row, (cand, sent) in enumerate(zip(cands, of_cand, strict=True)):
        enc_sent = by_start[sent.start]
        h = doc[cand.at:cand.h_end] if cand.h_end > cand.at else doc[cand.at:cand.at + 1]
        t = doc[cand.t_start:cand.t_end] if cand.t_end > cand.t_start >= 0 else doc[cand.anchor:cand.anchor + 1]
        first, last = (h, t) if h.start_char <= t.start_char else (t, h)
        out[row] = numpy.concatenate([
            enc_sent.pooled(h.start_char, h.end_char),
            enc_sent.pooled(t.start_char, t.end_char),
            enc_sent.pooled(first.end_char, last.start_char),
            enc_sent.mean,
        ])
    return out
