"""The learned stance model: multinomial logistic regression over pair features, stored as plain JSON.

Training uses scikit-learn (imported only by `fit`); inference is one sparse product (scipy)
and a softmax for all candidates of a document, so loading takes milliseconds and needs no scikit-learn.
A model may be stacked on a base model (`base`): the base model's log-odds of each label against
`none` are extra real-valued features, so a few hundred gold pairs adjust a model trained on a large
corpus rather than replace it.
The file is deterministic: weights rounded to DIGITS decimals, keys sorted, and its `version` is the
hash of its content.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy
from scipy.sparse import csr_matrix

from pipeline.common.errors import ConfigError
from pipeline.stance.features import FEATURES_VERSION, Candidate
from pipeline.stance.vectors import WIDTH, encoder_name

FORMAT = "geonews-stance-model/1"
NONE = "none"
DIGITS = 6


@dataclass(frozen=True)
class Training:
    """What a model was trained on, for provenance and licences."""

    data_hash: str  # sha256 of the training pairs (features and labels) and of the base model
    sources: tuple[str, ...]  # e.g. ("seesaw:train", "gold:train")
    examples: int
    gold_articles: int  # human gold articles of this project it saw (0: it never saw the project's gold)
    licence: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StanceModel:
    """Weights per feature and label (labels[0] is `none`), an intercept per label, an optional base model."""

    labels: tuple[str, ...]
    weights: Mapping[str, tuple[float, ...]]
    intercept: tuple[float, ...]
    training: Training
    base: StanceModel | None = None
    base_weights: tuple[tuple[float, ...], ...] = ()  # per base label other than none: a weight per label
    encoder: str = ""  # the encoder and pooling of the dense pair vectors (stance/vectors.py); "" = none
    dense: tuple[tuple[float, ...], ...] = ()  # per dense dimension: a weight per label

    def __post_init__(self) -> None:
        index = {name: k for k, name in enumerate(sorted(self.weights))}
        matrix = numpy.array([self.weights[name] for name in sorted(self.weights)], dtype=numpy.float64)
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_matrix", matrix.reshape(len(index), len(self.labels)))

    def logits(self, cands: Sequence[Candidate], vectors: numpy.ndarray | None = None) -> numpy.ndarray:
        """Unnormalised scores, one row per candidate and one column per label (`vectors`: dense, when it reads them)."""
        index: dict[str, int] = self._index  # type: ignore[attr-defined]
        matrix: numpy.ndarray = self._matrix  # type: ignore[attr-defined]
        # All candidates of a call at once: one 0/1 row per candidate, one sparse product.
        rows, cols = [], []
        for row, cand in enumerate(cands):
            for f in cand.features:
                if (k := index.get(f)) is not None:
                    rows.append(row)
                    cols.append(k)
        x = csr_matrix((numpy.ones(len(rows)), (rows, cols)), shape=(len(cands), len(index)))
        out = numpy.asarray(x @ matrix) + numpy.array(self.intercept, dtype=numpy.float64)
        if self.dense and len(cands):
            if vectors is None or vectors.shape != (len(cands), len(self.dense)):
                raise ValueError(f"this model reads {len(self.dense)} dense features per candidate ({self.encoder})")
            out += vectors.astype(numpy.float64) @ numpy.array(self.dense, dtype=numpy.float64)
        if self.base is not None and len(cands):
            out += self.base.log_odds(cands, vectors) @ numpy.array(self.base_weights, dtype=numpy.float64)
        return out

    @property
    def uses_encoder(self) -> bool:
        """Whether this model or its base reads dense pair vectors."""
        return bool(self.dense) or (self.base is not None and self.base.uses_encoder)

    def log_odds(self, cands: Sequence[Candidate], vectors: numpy.ndarray | None = None) -> numpy.ndarray:
        """Each label other than `none` against `none`, in log-odds: the features a stacked model reads."""
        z = self.logits(cands, vectors)
        return z[:, 1:] - z[:, :1]

    def proba(self, cands: Sequence[Candidate], vectors: numpy.ndarray | None = None) -> numpy.ndarray:
        """Probability of each label (columns in `labels` order) for each candidate."""
        z = self.logits(cands, vectors)
        z -= z.max(axis=1, keepdims=True)
        e = numpy.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def as_dict(self) -> dict[str, Any]:
        """The JSON document of the model."""
        t = self.training
        return {
            "format": FORMAT,
            "features_version": FEATURES_VERSION,
            "labels": list(self.labels),
            "intercept": list(self.intercept),
            "weights": {name: list(w) for name, w in sorted(self.weights.items())},
            "training": {"data_hash": t.data_hash, "sources": list(t.sources), "examples": t.examples,
                         "gold_articles": t.gold_articles, "licence": t.licence, "params": dict(t.params)},
            "base": self.base.as_dict() if self.base is not None else None,
            "base_weights": [list(w) for w in self.base_weights],
            # absent without an encoder, so a sparse-only model's file (and version) is what it always was
            **({"encoder": self.encoder, "dense": [list(w) for w in self.dense]} if self.dense else {}),
        }

    def dumps(self) -> str:
        """The model file's text: compact, sorted, one trailing newline."""
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"

    @property
    def version(self) -> str:
        """Short content hash of the model file: changes whenever any weight or the training data does."""
        return hashlib.sha256(self.dumps().encode()).hexdigest()[:12]


def from_dict(doc: Any, where: str) -> StanceModel:
    """A model from its JSON document; a malformed one is a ConfigError naming `where` and the field."""
    try:
        if doc.get("format") != FORMAT:
            raise ConfigError(f"{where}: not a stance model file (format {doc.get('format')!r}, expected {FORMAT!r})")
        if doc["features_version"] != FEATURES_VERSION:
            raise ConfigError(f"{where}: trained with features version {doc['features_version']}, this code computes "
                              f"version {FEATURES_VERSION}: retrain it")
        labels = tuple(str(x) for x in doc["labels"])
        if not labels or labels[0] != NONE:
            raise ConfigError(f"{where}: labels must start with {NONE!r}, got {list(labels)}")
        width = len(labels)
        weights = {str(k): tuple(float(x) for x in v) for k, v in doc["weights"].items()}
        if bad := next((k for k, v in weights.items() if len(v) != width), None):
            raise ConfigError(f"{where}: weights.{bad}: expected {width} numbers")
        t = doc["training"]
        training = Training(str(t["data_hash"]), tuple(map(str, t["sources"])), int(t["examples"]),
                            int(t["gold_articles"]), str(t["licence"]), dict(t["params"]))
        base = from_dict(doc["base"], f"{where}: base") if doc.get("base") is not None else None
        base_weights = tuple(tuple(float(x) for x in row) for row in doc.get("base_weights") or ())
        if base is not None and (len(base_weights) != len(base.labels) - 1 or any(len(r) != width for r in base_weights)):
            raise ConfigError(f"{where}: base_weights must be {len(base.labels) - 1} rows of {width} numbers")
        dense = tuple(tuple(float(x) for x in row) for row in doc.get("dense") or ())
        if any(len(r) != width for r in dense):
            raise ConfigError(f"{where}: dense must be rows of {width} numbers")
        if dense and (len(dense) != WIDTH or doc.get("encoder") != encoder_name()):
            raise ConfigError(f"{where}: trained on encoder {doc.get('encoder')!r} ({len(dense)} dimensions), this "
                              f"code computes {encoder_name()!r} ({WIDTH}): retrain it")
        return StanceModel(labels, weights, tuple(float(x) for x in doc["intercept"]), training, base, base_weights,
                           str(doc.get("encoder") or ""), dense)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{where}: malformed stance model ({type(exc).__name__}: {exc})") from None


def load_model(path: Path) -> StanceModel:
    """Read a model file, with a one-line error if it is missing or malformed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: stance model not found (run `dvc repro train`, or set preannotate.stance_model: "
                          f"false)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the stance model ({exc})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: invalid JSON in the stance model: {exc.msg}") from None
    return from_dict(doc, str(path))


def save_model(model: StanceModel, path: Path) -> None:
    """Write the model file atomically."""
    from pipeline.common.jsonl import atomic_writer

    with atomic_writer(Path(path)) as handle:
        handle.write(model.dumps())


def data_hash(examples: Sequence[tuple[Candidate, str]], base: StanceModel | None,
              vectors: numpy.ndarray | None = None) -> str:
    """sha256 of the training pairs' features and labels, in order, of the base model's version and of the vectors."""
    digest = hashlib.sha256((base.version if base is not None else "").encode())
    for cand, label in examples:
        digest.update(json.dumps([cand.features, label]).encode() + b"\n")
    if vectors is not None:
        digest.update(numpy.round(vectors.astype(numpy.float64), 4).tobytes())
    return digest.hexdigest()


def fit(
    examples: Sequence[tuple[Candidate, str]],
    labels: Sequence[str],
    *,
    c: float,
    min_count: int,
    max_iter: int,
    sources: Sequence[str],
    gold_articles: int,
    licence: str,
    base: StanceModel | None = None,
    vectors: numpy.ndarray | None = None,
    encoder: str = "",
) -> StanceModel:
    """Fit the model on (candidate, label) pairs; labels are `none` then `labels` (those present or not).

    Features seen in fewer than `min_count` pairs are dropped. With `base`, its log-odds are extra features;
    `vectors` (one row per pair) are what the base reads, and with `encoder` (their name) dense features too.
    """
    from scipy.sparse import csr_matrix, hstack
    from sklearn.linear_model import LogisticRegression

    classes = (NONE, *labels)
    if unknown := sorted({lab for _, lab in examples} - set(classes)):
        raise ConfigError(f"training labels {unknown} are not in {list(classes)}")
    counts = Counter(f for cand, _ in examples for f in cand.features)
    names = sorted(f for f, n in counts.items() if n >= min_count)
    index = {name: k for k, name in enumerate(names)}
    rows, cols = [], []
    for n, (cand, _) in enumerate(examples):
        for f in cand.features:
            if (k := index.get(f)) is not None:
                rows.append(n)
                cols.append(k)
    x = csr_matrix((numpy.ones(len(rows)), (rows, cols)), shape=(len(examples), len(names)))
    width = vectors.shape[1] if vectors is not None and encoder else 0
    if width:
        x = hstack([x, csr_matrix(numpy.asarray(vectors, dtype=numpy.float64))], format="csr")
    if base is not None:
        x = hstack([x, csr_matrix(base.log_odds([cand for cand, _ in examples], vectors))], format="csr")
    y = numpy.array([classes.index(lab) for _, lab in examples])
    present = sorted(set(y.tolist()))
    if len(present) < 2:
        raise ConfigError(f"cannot train a stance model: the {len(examples)} training pairs have only the label(s) "
                          f"{[classes[k] for k in present]}")
    clf = LogisticRegression(C=c, max_iter=max_iter, tol=1e-6)
    clf.fit(x, y)
    full = numpy.zeros((len(classes), x.shape[1]))
    bias = numpy.full(len(classes), -30.0)  # a label never seen in training is never proposed
    coef, intercept = clf.coef_, clf.intercept_
    if len(present) == 2:  # scikit-learn's binary case: one row for the second class against the first
        coef, intercept = numpy.vstack([-coef / 2, coef / 2]), numpy.array([-intercept[0] / 2, intercept[0] / 2])
    for row, k in enumerate(present):
        full[k], bias[k] = coef[row], intercept[row]

    def r(v: float) -> float:
        return round(float(v), DIGITS) + 0.0  # + 0.0 turns -0.0 into 0.0

    weights = {name: tuple(r(v) for v in full[:, k]) for name, k in index.items()}
    weights = {name: w for name, w in weights.items() if any(w)}
    dense = tuple(tuple(r(v) for v in full[:, len(names) + j]) for j in range(width))
    first_base = len(names) + width
    base_weights = tuple(tuple(r(v) for v in full[:, first_base + j]) for j in range(x.shape[1] - first_base))
    params = {"C": c, "min_count": min_count, "max_iter": max_iter}
    training = Training(data_hash(examples, base, vectors), tuple(sources), len(examples), gold_articles, licence,
                        params)
    return StanceModel(classes, weights, tuple(r(v) for v in bias), training, base, base_weights,
                       encoder if width else "", dense)
