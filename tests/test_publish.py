"""Tests of publish: the folder loads with `datasets` offline, trains models as shipped, rebuilds byte-identically (releases: test_hub_release.py)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline import publish as stage
from pipeline.common.errors import ConfigError, InputError
from pipeline.common.provenance import file_digest
from pipeline.dataset import hub
from pipeline.dataset.figure import FIGURE
from pipeline.dataset.release import MANIFEST
from pipeline.dataset.rows import features

FIXTURES = Path(__file__).parent / "fixtures" / "publish"
LABELED = FIXTURES / "labeled.jsonl"
PARAMS = """
preannotate:
  entity_labels: [PERSON, NORP, ORG, GPE, LOC]
  stance_ends: [PERSON, NORP, ORG, GPE, LOC]
  stance_labels: {stance_labels}
merge:
  seed: 7
  splits: {{train: 0.6, validation: 0.2, test: 0.2}}
  max_bad_share: 0.5
publish:
  version: {version}
  pretty_name: Test news
  license: other
  license_name: research-only
  private: true
  gated: false
  max_candidates_per_sentence: {max_candidates}
  figure_max_actors: 16
  rows_per_shard: {rows_per_shard}
  max_bad_share: {max_bad_share}
"""
RULES = (Path("resources/entity_patterns.yaml"), Path("resources/actors.yaml"), Path("resources/stance_cues.yaml"))


def write_params(folder: Path, version: str = "0.1.0", max_bad_share: float = 0.0,
                 stance_labels: str = "[against, favor]", rows_per_shard: int = 1000, max_candidates: int = 12) -> Path:
    path = folder / "params.yaml"
    path.write_text(PARAMS.format(version=version, max_bad_share=max_bad_share, stance_labels=stance_labels,
                                  rows_per_shard=rows_per_shard, max_candidates=max_candidates))
    return path


def build(folder: Path, out: str = "dataset", labeled: Path = LABELED, releases: Path | None = None,
          version: str = "0.1.0", metrics: Path = FIXTURES / "metrics",
          guidelines: Path | None = None, **params: Any) -> tuple[Path, dict]:
    cfg = stage.load_config(write_params(folder, version, **params))
    output = folder / out
    man = stage.build(labeled, output, cfg, metrics=metrics, releases=releases or folder / "releases",
                      guidelines=guidelines)
    return output, man


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("publish"))[0]


@pytest.fixture(scope="module")
def offline_hf(tmp_path_factory: pytest.TempPathFactory):
    """`datasets` with no network and a throw-away cache."""
    home = tmp_path_factory.mktemp("hf_home")
    saved = {k: os.environ.get(k) for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "HF_HOME", "HF_DATASETS_CACHE")}
    os.environ.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", HF_HOME=str(home), HF_DATASETS_CACHE=str(home / "ds"))
    import datasets

    yield datasets
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def loaded(built: Path, offline_hf) -> dict:
    return {name: offline_hf.load_dataset(str(built), name) for name in
            ("articles", "entities", "stance", "articles_silver", "entities_silver", "stance_silver")}


def test_every_config_loads_with_the_declared_features(loaded, built: Path) -> None:
    feats = features(stage.load_config(write_params(built.parent)))
    for name, ds in loaded.items():
        for split in ds.values():
            assert split.features == feats[name.removesuffix("_silver")], name
    assert loaded["entities"]["train"].features["ner_tags"].feature.names[:3] == ["O", "B-PERSON", "I-PERSON"]
    assert loaded["stance"]["train"].features["label"].names == ["none", "against", "favor"]
    gold = {r["id"] for s in loaded["articles"].values() for r in s}
    silver = {r["id"] for s in loaded["articles_silver"].values() for r in s}
    assert len(gold) == 2 and len(silver) == 3 and not gold & silver
    assert all(r["provenance"]["status"] == "gold" for s in loaded["articles"].values() for r in s)


def test_article_rows_keep_offsets_and_annotator_versions(loaded) -> None:
    rows = [r for s in loaded["articles"].values() for r in s]
    for row in rows:
        for e in row["entities"]:
            assert row["text"][e["start"] : e["end"]] == e["text"]
    two = next(r for r in rows if len(r["annotators"]) == 2)
    assert [a["annotator"] for a in two["annotations"]] == two["annotators"]
    assert two["agreement"]["n_annotators"] == 2


def test_entities_rows_are_spacy_tokens_with_valid_bio(loaded) -> None:
    import spacy

    tok = spacy.blank("en").tokenizer
    articles = {r["id"]: r for r in map(json.loads, LABELED.read_text().splitlines())}
    names = loaded["entities"]["train"].features["ner_tags"].feature.names
    rows = [r for s in loaded["entities"].values() for r in s]
    assert rows and any(t != 0 for r in rows for t in r["ner_tags"])
    for r in rows:
        tags = [names[t] for t in r["ner_tags"]]
        assert len(tags) == len(r["tokens"])
        article = articles[r["article_id"]]
        sentence = article["sentences"][r["sentence_index"]]
        text = article["text"][sentence["start"] : sentence["end"]]
        assert r["tokens"] == [t.text for t in tok(text) if not t.is_space], r["id"]
        for prev, tag in zip(["O", *tags], tags, strict=False):
            if tag.startswith("I-"):
                assert prev[2:] == tag[2:], (r["tokens"], tags)


def test_stance_rows_point_at_their_entities(loaded) -> None:
    rows = [r for s in loaded["stance"].values() for r in s]
    labels = {r["label"] for r in rows}
    assert labels == {0, 1, 2}
    for r in rows:
        assert r["sentence"][r["holder_start"] : r["holder_end"]] == r["holder"]
        assert r["sentence"][r["target_start"] : r["target_end"]] == r["target"]


def test_stance_rows_join_the_sentences_and_slice_the_article_with_standard_loading(loaded) -> None:
    """`load_dataset` as any script calls it: a stance row names its sentence as `entities` does, and its offsets cut
    the holder and target out of its `sentence` and, shifted by `sentence_start`, out of the article's text."""
    for suffix in ("", "_silver"):
        articles = {r["id"]: r for s in loaded["articles" + suffix].values() for r in s}
        sentences = {(r["article_id"], r["sentence_index"]): r for s in loaded["entities" + suffix].values() for r in s}
        rows = [r for s in loaded["stance" + suffix].values() for r in s]
        assert rows
        for r in rows:
            text = articles[r["article_id"]]["text"]
            assert (r["sentence_start"], r["sentence"]) == (sentences[r["article_id"], r["sentence_index"]]["sentence_start"],
                                                            text[r["sentence_start"] : r["sentence_end"]])
            for role in ("holder", "target"):
                start, end = r["sentence_start"] + r[f"{role}_start"], r["sentence_start"] + r[f"{role}_end"]
                assert text[start:end] == r["sentence"][r[f"{role}_start"] : r[f"{role}_end"]] == r[role]
                entity = articles[r["article_id"]]["entities"][r[f"{role}_index"]]
                assert (entity["start"], entity["end"]) == (start, end)


def test_splits_are_grouped_by_story(loaded) -> None:
    split_of: dict[str, set[str]] = defaultdict(set)
    article_story = {}
    for name in ("articles", "articles_silver"):
        for split, ds in loaded[name].items():
            for r in ds:
                split_of[r["story_id"]].add(split)
                article_story[r["id"]] = r["story_id"]
    assert all(len(s) == 1 for s in split_of.values())
    assert len(article_story) > len(split_of)  # the fixture has one story of two near-duplicate articles
    for name in ("entities", "stance", "entities_silver", "stance_silver"):
        for split, ds in loaded[name].items():
            assert all(split in split_of[article_story[r["article_id"]]] for r in ds)


def test_rebuild_with_no_input_change_is_byte_identical(tmp_path: Path, built: Path) -> None:
    again, _ = build(tmp_path, "again")
    files = sorted(p.relative_to(built) for p in built.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert len(files) > 8
    for rel in files:
        assert (built / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_card_parses_with_huggingface_hub_and_shows_the_figure(built: Path) -> None:
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(built / "README.md")
    data = card.data.to_dict()
    for key in ("configs", "dataset_info", "license", "language", "task_categories", "size_categories",
                "annotations_creators", "source_datasets"):
        assert data.get(key), key
    assert {c["config_name"] for c in data["configs"]} >= {"articles", "entities", "stance"}
    for c in data["configs"]:
        for f in c["data_files"]:
            assert sorted(built.glob(f["path"])), f["path"]
    assert f"![Actor-by-actor stance matrix of the gold stances]({FIGURE})" in card.text
    assert (built / FIGURE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Version 0.1.0" in card.text and "No article records a translation" in card.text
    assert file_digest(LABELED, "md5") in card.text


def test_a_spacy_ner_model_trains_on_the_entities_config(loaded) -> None:
    import spacy
    from spacy.pipeline import EntityRecognizer
    from spacy.tokens import Doc, Span
    from spacy.training import Example, biluo_tags_to_spans, iob_to_biluo

    ds = loaded["entities"]["train"]
    names = ds.features["ner_tags"].feature.names
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("ner")
    assert isinstance(ner, EntityRecognizer)
    examples = []
    for row in ds:
        doc = Doc(nlp.vocab, words=row["tokens"])
        gold = doc.copy()
        gold.ents = [Span(gold, s.start, s.end, s.label_) for s in
                     biluo_tags_to_spans(gold, iob_to_biluo([names[t] for t in row["ner_tags"]]))]
        examples.append(Example(doc, gold))
    for label in {n[2:] for n in names if n != "O"}:
        ner.add_label(label)
    spacy.util.fix_random_seed(0)
    optimizer = nlp.initialize(lambda: examples)
    losses = []
    for _ in range(20):
        step: dict[str, float] = {}
        nlp.update(examples, sgd=optimizer, losses=step, drop=0.0)
        losses.append(step["ner"])
    assert losses[-1] < 0.7 * losses[0] and min(losses[-5:]) < min(losses[:5])


def test_a_bag_of_words_classifier_fits_the_stance_config(loaded) -> None:
    rows = [r for s in loaded["stance"].values() for r in s]
    texts = [f"[{r['holder']}] [{r['target']}] {r['sentence']}".lower().split() for r in rows]
    vocab = {w: i for i, w in enumerate(sorted({w for t in texts for w in t}))}
    x = np.zeros((len(rows), len(vocab)))
    for i, t in enumerate(texts):
        for word in t:
            x[i, vocab[word]] = 1.0
    y = np.array([r["label"] for r in rows])
    w = np.zeros((len(vocab), 3))
    for _ in range(300):  # softmax regression, plain gradient descent
        z = x @ w
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p[np.arange(len(y)), y] -= 1
        w -= 0.5 * x.T @ p / len(y)
    accuracy = float(((x @ w).argmax(1) == y).mean())
    majority = np.bincount(y).max() / len(y)
    assert accuracy > majority


def test_changelog_against_the_recorded_previous_version(tmp_path: Path) -> None:
    _, first = build(tmp_path, "v1")
    releases = tmp_path / "releases"
    releases.mkdir()
    (releases / "manifest-0.1.0.json").write_text(json.dumps(first))
    lines = LABELED.read_text().splitlines()
    smaller = tmp_path / "labeled.jsonl"
    smaller.write_text("\n".join(lines[1:]) + "\n")
    out, _ = build(tmp_path, "v2", labeled=smaller, releases=releases, version="0.2.0")
    removed = json.loads(lines[0])["id"]
    card = (out / "README.md").read_text()
    assert "**0.2.0** (against 0.1.0): 0 article(s) added, 1 removed" in card
    assert f"removed: `{removed}`" in card
    # the same version never diffs against itself
    out3, _ = build(tmp_path, "v1again", releases=releases, version="0.1.0")
    assert "first published version" in (out3 / "README.md").read_text()


def test_push_without_token_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    with pytest.raises(ConfigError, match="HF_TOKEN is not set"):
        hub.hf_token()


def test_labels_outside_the_schema_are_bad_records(tmp_path: Path) -> None:
    rec = json.loads(LABELED.read_text().splitlines()[0])
    rec["entities"][0]["label"] = "DATE"
    bad = tmp_path / "labeled.jsonl"
    bad.write_text(json.dumps(rec) + "\n" + LABELED.read_text())
    from pipeline.common.errors import InputError

    with pytest.raises(InputError, match=r"'DATE' is not in preannotate\.entity_labels"):
        build(tmp_path, labeled=bad)


def test_without_metrics_the_card_scores_the_preannotation_itself(tmp_path: Path) -> None:
    out, _ = build(tmp_path, metrics=tmp_path / "no-metrics")
    card = (out / "README.md").read_text()
    assert "compared with the final human labels of the 2 gold articles" in card
    assert "| entities | " in card and "| stances | " in card
    assert "mean Cohen's kappa on the stance labels of matched pairs 0.286" in card


def test_guidelines_ship_with_the_data_and_the_card_quotes_and_links_them(tmp_path: Path) -> None:
    guidelines = tmp_path / "rules.md"
    guidelines.write_text("# Guidelines\n\n## What a stance is\n\nHolder X opposes target Y: `against`.\n\n## Entities\n\nNames.\n")
    out, man = build(tmp_path, guidelines=guidelines)
    assert (out / stage.GUIDELINES).read_text() == guidelines.read_text()
    assert stage.GUIDELINES in man["files"]
    card = (out / "README.md").read_text()
    assert f"From the annotation guidelines ([{stage.GUIDELINES}]({stage.GUIDELINES})):" in card
    assert "Holder X opposes target Y: `against`." in card and "Names." not in card


def test_missing_guidelines_file_is_a_one_line_error(tmp_path: Path) -> None:
    from pipeline.common.errors import InputError

    with pytest.raises(InputError, match=r"nope\.md: guidelines file not found"):
        build(tmp_path, guidelines=tmp_path / "nope.md")
    assert not (tmp_path / "dataset").exists()


@pytest.mark.parametrize("version", ['"0.1.0\\n"', '"0.1.0 "', "v0.1.0", "01.2.3"])
def test_a_version_must_be_exactly_major_minor_patch(tmp_path: Path, version: str) -> None:
    """The whole string is matched: a final line break ("0.1.0\\n" in YAML) is no version."""
    with pytest.raises(ConfigError, match=r"version must be a semantic version MAJOR\.MINOR\.PATCH"):
        stage.load_config(write_params(tmp_path, version))
    stage.load_config(write_params(tmp_path, "0.1.0"))


def test_bad_label_set_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"preannotate\.stance_labels: must not contain 'none'"):
        stage.load_config(write_params(tmp_path, stance_labels="[against, none]"))
    with pytest.raises(ConfigError, match=r"preannotate\.stance_labels: expected names without duplicates, got favor twice$"):
        stage.load_config(write_params(tmp_path, stance_labels="[favor, favor]"))


def test_a_neutral_relation_survives_merge_and_publish_as_a_class_label(tmp_path: Path, offline_hf,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline import merge

    monkeypatch.setattr(merge, "_actor_linker", lambda *args: lambda text, label: None)
    snapshot = "20220112T093000Z.jsonl"
    tasks = [json.loads(line) for line in (FIXTURES / "annotations" / snapshot).read_text().splitlines()]
    relation = next(r for r in tasks[3]["annotations"][0]["result"] if r["type"] == "relation")
    relation["labels"] = ["neutral"]  # article D: Moscow -> Washington
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / snapshot).write_text("".join(json.dumps(t) + "\n" for t in tasks))
    params = write_params(tmp_path, stance_labels="[against, favor, neutral]")
    labeled = tmp_path / "labeled.jsonl"
    merge.main(FIXTURES / "preannotated.jsonl", tmp_path / "annotations", labeled, tmp_path / "report.json", params, RULES)
    out = tmp_path / "dataset"
    stage.build(labeled, out, stage.load_config(params), metrics=FIXTURES / "metrics", releases=tmp_path / "releases",
                guidelines=None)
    ds = offline_hf.load_dataset(str(out), "stance")
    label = next(iter(ds.values())).features["label"]
    assert label.names == ["none", "against", "favor", "neutral"]
    neutral = [r for split in ds.values() for r in split if r["label"] == label.str2int("neutral")]
    assert [(r["holder"], r["target"]) for r in neutral] == [("Moscow", "Washington")]
    card = (out / "README.md").read_text()
    assert "| `neutral` | 3 | Defined in the annotation guidelines. | 1 |" in card


def _labeled_with(tmp_path: Path, change) -> Path:
    """labeled.jsonl of the fixtures with `change` applied to its first record."""
    lines = LABELED.read_text().splitlines()
    first = json.loads(lines[0])
    change(first)
    path = tmp_path / "labeled.jsonl"
    path.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["entities"][0].update(start="0"), "entities[0].start must be an integer, got str '0'"),
        (lambda r: r["entities"][1].pop("start"), "entities[1] has no 'start'"),
        (lambda r: r["entities"].__setitem__(0, "Russia"), "entities[0] must be an object, got str 'Russia'"),
        (lambda r: r["stances"][0].update(label="maybe"), "stances[0].label 'maybe' is not in preannotate.stance_labels"),
        (lambda r: r["sentences"].__setitem__(0, {"start": 0}), "sentences[0] has no 'end'"),
        (lambda r: r["sentences"].__setitem__(1, {"start": 0, "end": 5}), "sentences[1] starts at 0, before the end"),
        (lambda r: r.update(provenance=None), "field 'provenance' must be an object, got NoneType None"),
        (lambda r: r["provenance"].update(model_version=3.8), "field 'provenance.model_version' must be a string or null"),
        (lambda r: r["annotations"][0].update(lead_time="slow"), "field 'annotations[0].lead_time' must be a number"),
        (lambda r: r["annotations"][0].update(from_prediction="yes"),
         "field 'annotations[0].from_prediction' must be true, false or null, got str 'yes'"),
    ],
)
def test_a_record_breaking_the_contract_is_a_one_line_error_or_skipped(tmp_path: Path, change, message: str) -> None:
    labeled = _labeled_with(tmp_path, change)
    with pytest.raises(InputError) as failed:
        build(tmp_path, labeled=labeled)
    assert "\n" not in str(failed.value) and f"{labeled}:1: {message}" in str(failed.value)
    assert not (tmp_path / "dataset").exists()
    _, man = build(tmp_path, labeled=labeled, max_bad_share=0.5)
    assert json.loads(LABELED.read_text().splitlines()[0])["id"] not in man["articles"] and len(man["articles"]) == 4


def test_cli_reports_a_bad_record_in_one_line_without_traceback(tmp_path: Path) -> None:
    labeled = _labeled_with(tmp_path, lambda r: r["entities"][0].update(start="0"))
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "publish", "--input", str(labeled), "--output", str(tmp_path / "ds"),
         "--metrics", str(FIXTURES / "metrics"), "--releases", str(tmp_path / "releases"),
         "--params", str(write_params(tmp_path))],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 4 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: publish: 1 of 5 records are bad")


def test_unparseable_lines_count_in_the_bad_share(tmp_path: Path) -> None:
    lines = LABELED.read_text().splitlines()
    labeled = tmp_path / "labeled.jsonl"
    labeled.write_text("\n".join(["{not json", lines[0], lines[1]]) + "\n")
    _, man = build(tmp_path, labeled=labeled, max_bad_share=0.34)  # 1 of 3 lines, not 1 of 2 parsed ones
    assert len(man["articles"]) == 2
    with pytest.raises(InputError, match=r"1 of 3 records are bad .*labeled.jsonl:1: invalid JSON"):
        build(tmp_path, labeled=labeled, max_bad_share=0.3)


def test_a_corrupt_release_manifest_is_a_one_line_error(tmp_path: Path, built: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    releases = tmp_path / "releases"
    releases.mkdir()
    corrupt = releases / "manifest-0.1.0.json"
    corrupt.write_text('{"version": "0.1.0", "files": {')
    with pytest.raises(InputError, match=r"manifest-0\.1\.0\.json:1: invalid JSON"):
        build(tmp_path, releases=releases, version="0.2.0")  # the changelog reads the previous version
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    man = json.loads((built / MANIFEST).read_text())
    with pytest.raises(InputError, match=r"manifest-0\.1\.0\.json:1: invalid JSON"):
        hub.push(built, "org/geonews", man, releases, hub.Access(private=True))  # fails before any upload
    corrupt.write_text('["not", "a", "manifest"]')
    with pytest.raises(InputError, match="release manifest must be a JSON object, got list"):
        hub.push(built, "org/geonews", man, releases, hub.Access(private=True))
    corrupt.write_text('{"articles": {"a": 1}}')
    with pytest.raises(InputError, match="field 'articles' must map article ids to objects"):
        build(tmp_path, releases=releases, version="0.2.0")


def test_a_metrics_file_that_is_not_json_is_a_one_line_error(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "preannotation.json").write_bytes(b"\xff{}")
    with pytest.raises(InputError, match=r"preannotation\.json: not valid UTF-8"):
        build(tmp_path, metrics=metrics)


def test_published_folder_and_files_follow_the_umask(tmp_path: Path) -> None:
    """mkdtemp/mkstemp create 0o700/0o600; the published folder and its files get the user's umask instead."""
    from pipeline.common.jsonl import umask_mode, write_jsonl

    old = os.umask(0o022)
    try:
        assert umask_mode(0o777) == 0o755 and umask_mode(0o666) == 0o644
        write_jsonl(tmp_path / "out.jsonl", [{"a": 1}])
        assert stat.S_IMODE((tmp_path / "out.jsonl").stat().st_mode) == 0o644
        output, _ = build(tmp_path)
        assert stat.S_IMODE(output.stat().st_mode) == 0o755
        assert {stat.S_IMODE(p.stat().st_mode) for p in output.rglob("*") if p.is_file()} == {0o644}
    finally:
        os.umask(old)


def test_a_recorded_version_is_never_rebuilt_with_other_content(tmp_path: Path) -> None:
    """Releases that cannot lie: the build itself refuses, not only the push, unless the content is identical."""
    releases = tmp_path / "releases"
    releases.mkdir()
    _, man = build(tmp_path, releases=releases)
    (releases / "manifest-0.1.0.json").write_text(json.dumps(man))
    build(tmp_path, releases=releases)  # identical content: rebuilt without complaint
    man["files"]["LICENSE"] = "0" * 64
    (releases / "manifest-0.1.0.json").write_text(json.dumps(man))
    with pytest.raises(ConfigError, match=r"^version 0.1.0 was already published with other content: bump publish.version$"):
        build(tmp_path, releases=releases)
    build(tmp_path, releases=releases, version="0.1.1")  # the bump
