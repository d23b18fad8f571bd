"""A text-free release (publish.include_text: false) carries no article text; `hydrate` rebuilds the full release
from a user's own copies of the articles, byte for byte, and names every article whose copy is missing or differs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.common.errors import ConfigError
from pipeline.common.shards import write_records
from pipeline.dataset import hydrate, textfree
from pipeline.dataset.rows import CONFIGS, SILVER
from tests.test_hub_release import build, params
from tests.test_publish import LABELED, offline_hf  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parents[1]
ARTICLES = [json.loads(line) for line in LABELED.read_text().splitlines()]
EVERY = [c + s for c in CONFIGS for s in ("", SILVER)]


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The full release and the text-free release of the same labeled articles."""
    full = build(tmp_path_factory.mktemp("full"), "ds")[0]
    text_free = build(tmp_path_factory.mktemp("textfree"), "ds", include_text="false")[0]
    return full, text_free


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def rows(folder: Path) -> dict[str, list[dict[str, Any]]]:
    import pyarrow.parquet as pq

    return {c: [r for p in sorted((folder / c).glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
            for c in EVERY if (folder / c).is_dir()}


def copies(folder: Path, articles: list[dict[str, Any]] = ARTICLES) -> Path:
    """The user's copies as the pipeline's cleaned data/articles/ shard folder."""
    write_records(folder, ({k: a[k] for k in ("id", "title", "text", "date", "url", "source")} for a in articles), 2)
    return folder


def run_hydrate(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline", "hydrate", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=300, check=False)


def test_a_text_free_release_carries_hashes_offsets_and_labels_but_no_text(releases: tuple[Path, Path]) -> None:
    full, text_free = releases
    published = rows(text_free)
    every_file = files(text_free)
    shown = json.dumps(published, ensure_ascii=False) + "".join(
        b.decode() for p, b in every_file.items() if not p.endswith((".parquet", ".png")))
    for a in ARTICLES:
        assert a["title"] not in shown
        for s in a["sentences"]:
            assert a["text"][s["start"] : s["end"]] not in shown, a["id"]
    columns = {c: set(r[0]) for c, r in published.items()}
    assert not columns["articles"] & {"text", "title"} and "tokens" not in columns["entities"]
    assert not columns["stance"] & {"sentence", "holder", "target"}
    assert {"token_starts", "ner_tags"} <= columns["entities"] and {"holder_start", "label"} <= columns["stance"]
    by_id = {r["id"]: r for c in ("articles", "articles_silver") for r in published[c]}
    for a in ARTICLES:
        assert by_id[a["id"]]["text_sha256"] == hashlib.sha256(a["text"].encode()).hexdigest()
        assert by_id[a["id"]]["title_sha256"] == hashlib.sha256(a["title"].encode()).hexdigest()
        assert [(e["start"], e["end"], e["label"]) for e in by_id[a["id"]]["entities"]] == \
            [(e["start"], e["end"], e["label"]) for e in a["entities"]]
    assert textfree.TEXT_FREE in (text_free / "README.md").read_text()
    assert textfree.FULL in (full / "README.md").read_text() and not (full / textfree.HYDRATE_FILE).exists()


def test_the_text_free_release_loads_with_datasets(releases: tuple[Path, Path], offline_hf) -> None:  # noqa: F811
    _, text_free = releases
    for name in EVERY:
        ds = offline_hf.load_dataset(str(text_free), name)
        assert sum(len(s) for s in ds.values()) == len(rows(text_free)[name]), name
    assert "text_sha256" in offline_hf.load_dataset(str(text_free), "articles")["train"].features


def test_hydrated_from_the_pipelines_articles_equals_the_full_release(tmp_path: Path, releases: tuple[Path, Path],
                                                                      offline_hf) -> None:  # noqa: F811
    full, text_free = releases
    out = tmp_path / "hydrated"
    hydrate.main(dataset=text_free, articles=copies(tmp_path / "articles", ARTICLES[::-1]), output=out,
                 patterns=ROOT / "resources" / "boilerplate.yaml")
    got, want = files(out), files(full)
    assert got.pop("README.md") != want.pop("README.md")
    assert got == want  # every Parquet shard, the manifest, the licence and the figure, byte for byte
    card = (out / "README.md").read_text()
    assert textfree.HYDRATED in card and textfree.TEXT_FREE not in card and "5 of 5 articles" in card
    for name in EVERY:
        hydrated, released = offline_hf.load_dataset(str(out), name), offline_hf.load_dataset(str(full), name)
        assert set(hydrated) == set(released)
        for split in released:
            assert hydrated[split].features == released[split].features
            assert hydrated[split].to_list() == released[split].to_list(), (name, split)


def test_hydrated_from_a_raw_corpus_by_the_cli_equals_the_full_release(tmp_path: Path,
                                                                        releases: tuple[Path, Path]) -> None:
    full, text_free = releases
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "mine.jsonl").write_text("".join(json.dumps({k: a[k] for k in ("title", "text", "url", "date", "source")})
                                               + "\n" for a in ARTICLES))
    run = run_hydrate("--dataset", text_free, "--articles", corpus, "--output", tmp_path / "out")
    assert run.returncode == 0, run.stderr
    assert "hydrate: wrote" in run.stderr and "5 of 5 articles hydrated" in run.stderr
    assert {p: b for p, b in files(tmp_path / "out").items() if p.endswith(".parquet")} == \
        {p: b for p, b in files(full).items() if p.endswith(".parquet")}


def test_copies_that_differ_or_are_missing_are_named_one_line_each_and_the_rest_hydrated(
        tmp_path: Path, releases: tuple[Path, Path]) -> None:
    full, text_free = releases
    edited, retitled, missing = ARTICLES[0]["id"], ARTICLES[1]["id"], ARTICLES[2]["id"]
    mine = [a | {"text": a["text"].replace("demanded", "asked for")} if a["id"] == edited else
            a | {"title": a["title"] + " (updated)"} if a["id"] == retitled else a
            for a in ARTICLES if a["id"] != missing]
    run = run_hydrate("--dataset", text_free, "--articles", copies(tmp_path / "articles", mine),
                      "--output", tmp_path / "out")
    assert run.returncode == 3, run.stderr
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert lines[-1] == (f"error: 3 of 5 articles not hydrated (their copies are missing or differ, listed above); "
                         f"the other 2 are in {tmp_path / 'out'}")
    problems = [line for line in lines if line.startswith("hydrate: article ")]
    assert len(problems) == 3
    assert any(line.startswith(f"hydrate: article {edited} (https://news.example.org/a): the text of ")
               and "differs from the published one" in line for line in problems)
    assert any(line.startswith(f"hydrate: article {retitled} (https://news.example.org/b): the title of ")
               for line in problems)
    assert any(line.startswith(f"hydrate: article {missing} (https://news.example.org/c): no copy has its text")
               for line in problems)
    kept = {a["id"] for a in ARTICLES} - {edited, retitled, missing}
    got, want = rows(tmp_path / "out"), rows(full)
    for name, released in want.items():
        key = "id" if name.startswith("articles") else "article_id"
        assert got.get(name, []) == [r for r in released if r[key] in kept], name


def test_hydrate_refuses_a_folder_that_is_not_a_text_free_release(tmp_path: Path, releases: tuple[Path, Path]) -> None:
    full, _ = releases
    run = run_hydrate("--dataset", full, "--articles", copies(tmp_path / "articles"), "--output", tmp_path / "out")
    assert run.returncode == 3 and "Traceback" not in run.stderr
    assert run.stderr.splitlines()[-1] == (f"error: {full / textfree.HYDRATE_FILE}: not found: {full} is not a "
                                           "text-free release (publish.include_text: false)")
    assert not (tmp_path / "out").exists()


def test_include_text_must_be_a_boolean(tmp_path: Path) -> None:
    from pipeline import publish as stage

    assert stage.load_config(params(tmp_path)).include_text is True  # the default: a full release
    with pytest.raises(ConfigError, match=r"publish\.include_text"):
        stage.load_config(params(tmp_path, include_text="sometimes"))


def test_a_text_free_release_refuses_an_entity_text_its_offsets_do_not_give(tmp_path: Path) -> None:
    from pipeline.common.errors import InputError

    records = [json.loads(line) for line in LABELED.read_text().splitlines()]
    records[0]["entities"][0]["text"] = "Russland"  # hydration would give the text at the offsets, "Russia"
    labeled = tmp_path / "labeled.jsonl"
    labeled.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(InputError, match=rf"article {records[0]['id']}: entity 'Russland' is not the text at its "
                                         r"offsets 0-6: a text-free release could not be hydrated exactly"):
        build(tmp_path, "ds", labeled=labeled, include_text="false")
    assert build(tmp_path, "full", labeled=labeled)[0].is_dir()  # a full release ships the entity text as it is


def test_a_damaged_text_free_release_is_one_line_and_exit_3(tmp_path: Path, releases: tuple[Path, Path]) -> None:
    import shutil

    _, text_free = releases
    damaged = tmp_path / "damaged"
    shutil.copytree(text_free, damaged)
    shard = damaged / "articles" / "train-00000-of-00001.parquet"
    shard.write_bytes(b"not parquet")
    run = run_hydrate("--dataset", damaged, "--articles", copies(tmp_path / "articles"), "--output", tmp_path / "out")
    assert run.returncode == 3 and "Traceback" not in run.stderr
    assert run.stderr.splitlines()[-1].startswith(f"error: {shard}: not a readable Parquet file (")
    (damaged / textfree.HYDRATE_FILE).write_text('{"format": "geonews-text-free/1", "bio_tags": ["O"]}')
    run = run_hydrate("--dataset", damaged, "--articles", tmp_path / "articles", "--output", tmp_path / "out")
    assert run.returncode == 3 and "Traceback" not in run.stderr
    assert run.stderr.splitlines()[-1] == f"error: {damaged / textfree.HYDRATE_FILE}: bad or missing key 'stance_classes'"


def test_a_release_of_many_shards_hydrates_to_the_same_shards(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    full = build(tmp_path / "a", "ds", rows_per_shard=2)[0]
    text_free = build(tmp_path / "b", "ds", rows_per_shard=2, include_text="false")[0]
    assert len(list((text_free / "entities_silver").glob("train-*.parquet"))) > 1
    hydrate.main(dataset=text_free, articles=copies(tmp_path / "articles"), output=tmp_path / "out",
                 patterns=ROOT / "resources" / "boilerplate.yaml")
    got, want = files(tmp_path / "out"), files(full)
    assert {p for p in got if p.endswith(".parquet")} == {p for p in want if p.endswith(".parquet")}
    assert got.pop("README.md") and want.pop("README.md") and got == want
