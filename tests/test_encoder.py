"""The encoder stance model: the numpy encoder matches its reference, pair vectors pool the right pieces, the
dense model learns a pattern it is shown (and not shuffled labels), and its file round-trips."""

from __future__ import annotations

from pathlib import Path

import numpy
import pytest
import spacy
from spacy.tokens import Doc

from pipeline.common.errors import ConfigError
from pipeline.stance.features import Candidate
from pipeline.stance.model import NONE, fit, load_model, save_model
from pipeline.stance.vectors import DIM, WIDTH, encoder, encoder_name, pair_vectors

LABELS = ("against", "favor")


def test_sentence_embeddings_match_sentence_transformers() -> None:
    """The cosines the sentence-transformers documentation gives for all-MiniLM-L6-v2 (0.7553 and -0.1050)."""
    enc = encoder()
    e = enc.sentence_embedding(["A man is eating food.", "A man is eating a piece of bread.", "A man is riding a horse."])
    assert numpy.allclose(numpy.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert float(e[0] @ e[1]) == pytest.approx(0.7553, abs=2e-3)
    assert float(e[0] @ e[2]) < float(e[0] @ e[1]) - 0.3


def test_word_pieces_point_back_into_the_text() -> None:
    text = "Moscow’s envoy rejected NATO’s «open door» policy."
    states, offsets = encoder().encode([text])[0]
    assert states.shape == (len(offsets), DIM)
    pieces = [text[a:b].lower() for a, b in offsets if b > a]
    assert pieces[0] == "moscow" and "nato" in pieces and "rejected" in pieces


def _doc(words: list[str]) -> Doc:
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    return nlp(Doc(nlp.vocab, words=words))


def test_pair_vectors_pool_each_end_and_differ_by_direction() -> None:
    doc = _doc(["Russia", "condemned", "Ukraine", "on", "Monday", "."])
    forward = Candidate(0, 1, ("bias",), (), 1, at=0, h_end=1, t_start=2, t_end=3)
    backward = Candidate(1, 0, ("bias",), (), 1, at=2, h_end=3, t_start=0, t_end=1)
    v = pair_vectors(doc, [forward, backward])
    assert v.shape == (2, WIDTH)
    holder, target = v[:, :DIM], v[:, DIM:2 * DIM]
    assert numpy.allclose(holder[0], target[1]) and numpy.allclose(target[0], holder[1])  # the ends swap
    assert not numpy.allclose(holder[0], target[0])
    assert numpy.allclose(v[0, 3 * DIM:], v[1, 3 * DIM:])  # the same sentence
    assert numpy.abs(v[0, 2 * DIM:3 * DIM]).sum() > 0  # "condemned" lies between them


def _synthetic(n: int, seed: int) -> tuple[list[tuple[Candidate, str]], numpy.ndarray]:
    """Pairs whose label is written in one dense direction only (the sparse features say nothing)."""
    rng = numpy.random.default_rng(seed)
    x = rng.normal(scale=0.05, size=(n, WIDTH)).astype(numpy.float32)  # noise in every dimension,
    x[:, [7, 900]] = rng.normal(size=(n, 2))  # the signal in two
    score = x[:, 7] - x[:, 900]
    labels = numpy.where(score > 1.0, "favor", numpy.where(score < -1.0, "against", NONE))
    return [(Candidate(0, 1, ("bias",), (), 0), str(lab)) for lab in labels], x


def _fit(pairs: list[tuple[Candidate, str]], x: numpy.ndarray):
    return fit(pairs, LABELS, c=1.0, min_count=1, max_iter=500, sources=("test",), gold_articles=0, licence="test",
               vectors=x, encoder=encoder_name())


def _accuracy(model, pairs: list[tuple[Candidate, str]], x: numpy.ndarray) -> float:
    predicted = numpy.array(model.labels)[model.proba([c for c, _ in pairs], x).argmax(axis=1)]
    return float((predicted == numpy.array([lab for _, lab in pairs])).mean())


def test_dense_model_learns_a_pattern_it_is_shown_and_not_shuffled_labels() -> None:
    pairs, x = _synthetic(1500, 0)
    test_pairs, test_x = _synthetic(600, 1)
    majority = max(numpy.mean([lab == k for _, lab in test_pairs]) for k in (NONE, *LABELS))
    assert _accuracy(_fit(pairs, x), test_pairs, test_x) > 0.85 > majority + 0.2
    shuffled = [(c, lab) for (c, _), lab in zip(pairs, numpy.random.default_rng(2).permutation([lab for _, lab in pairs]),
                                                 strict=True)]
    assert _accuracy(_fit(shuffled, x), test_pairs, test_x) < majority + 0.08


def test_dense_model_file_round_trips_with_identical_predictions(tmp_path: Path) -> None:
    pairs, x = _synthetic(300, 3)
    model = _fit(pairs, x)
    save_model(model, tmp_path / "m.json")
    again = load_model(tmp_path / "m.json")
    assert again.version == model.version and again.uses_encoder
    cands = [c for c, _ in pairs]
    assert numpy.array_equal(again.proba(cands, x), model.proba(cands, x))
    with pytest.raises(ValueError, match="dense features"):
        again.proba(cands)  # a dense model without its vectors is a bug, never a silent sparse score


def test_a_model_from_another_encoder_is_refused(tmp_path: Path) -> None:
    pairs, x = _synthetic(200, 4)
    text = _fit(pairs, x).dumps().replace(encoder_name(), "some-other-encoder/holder")
    (tmp_path / "m.json").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="retrain it"):
        load_model(tmp_path / "m.json")


def test_a_stance_model_without_its_threshold_is_a_config_error() -> None:
    """One default per key: the threshold comes from params.yaml, the component has none of its own."""
    from pipeline.entities.annotator import Annotator
    from pipeline.entities.rules import load_rules

    root = Path(__file__).resolve().parents[1] / "resources"
    rules = load_rules(root / "entity_patterns.yaml", root / "actors.yaml", root / "stance_cues.yaml", LABELS)
    model = load_model(root / "stance_model" / "seesaw.json")
    with pytest.raises(ConfigError, match=r"preannotate\.stance_threshold"):
        Annotator(spacy.blank("en"), rules, ["GPE"], ["GPE"], LABELS, model)
    assert Annotator(spacy.blank("en"), rules, ["GPE"], ["GPE"], LABELS, model, 0.35).stance_threshold == 0.35
