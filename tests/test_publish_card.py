"""The dataset card: Hub template sections, figures derived from the data, offline metadata validation, a Quick start that runs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from test_publish import LABELED, build, built, offline_hf  # noqa: F401 (fixtures)

from pipeline.dataset.sections import REPO_PLACEHOLDER, SMALL_SAMPLE

ROOT = Path(__file__).resolve().parent.parent


def _labeled(tmp_path: Path, keep=lambda r: True, change=lambda r: None) -> Path:
    """The fixture labeled.jsonl with records filtered by `keep` and edited by `change`."""
    records = [r for r in map(json.loads, LABELED.read_text().splitlines()) if keep(r)]
    for r in records:
        change(r)
    path = tmp_path / "labeled.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _python_blocks(markdown: str, section: str) -> list[str]:
    """The ```python blocks of one `## section` of a Markdown text."""
    body = markdown.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.DOTALL)


def _run(code: str) -> dict[str, Any]:
    scope: dict[str, Any] = {}
    exec(compile(code, "<quick start>", "exec"), scope)
    return scope


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory, built: Path) -> dict[str, Path]:  # noqa: F811
    """Releases of different shapes: gold and silver, gold only (one split), silver only, no gold train split."""
    out = {"gold and silver": built}
    to_test = lambda r: r.update(split="test") if r["split"] == "train" else None  # noqa: E731
    for name, keep, change in (("gold only", lambda r: r["status"] == "gold", lambda r: None),
                               ("silver only", lambda r: r["status"] == "silver", lambda r: None),
                               ("no gold train", lambda r: True, to_test)):
        folder = tmp_path_factory.mktemp(name.replace(" ", "_"))
        out[name] = build(folder, labeled=_labeled(folder, keep, change))[0]
    return out


RELEASES = ["gold and silver", "gold only", "silver only", "no gold train"]


def _splits(folder: Path) -> dict[str, list[str]]:
    """The splits each config declares in the card's `configs` metadata."""
    from huggingface_hub import DatasetCard

    return {c["config_name"]: [f["split"] for f in c["data_files"]]
            for c in DatasetCard.load(folder / "README.md").data.configs}


def test_the_release_shapes_are_the_ones_the_tests_mean(variants: dict[str, Path]) -> None:
    assert _splits(variants["gold only"]) == {"articles": ["train"], "entities": ["train"], "stance": ["train"]}
    assert set(_splits(variants["silver only"])) == {"articles_silver", "entities_silver", "stance_silver"}
    no_train = _splits(variants["no gold train"])
    assert no_train["entities"] == ["test"] and "train" not in no_train["entities_silver"]


@pytest.mark.parametrize("release", RELEASES)
def test_the_cards_quick_start_runs_on_the_release(variants: dict[str, Path], offline_hf, release: str) -> None:  # noqa: F811
    """The Quick start, cut out of the generated card, runs as written with the installed `datasets`, which is at
    least the version the card says loading needs."""
    from packaging.version import Version

    folder = variants[release]
    card = (folder / "README.md").read_text()
    (stated,) = re.findall(r"Loading needs `datasets>=([0-9.]+)`", card)
    assert Version(offline_hf.__version__) >= Version(stated)
    (block,) = _python_blocks(card, "Quick start")
    scope = _run(block.replace(REPO_PLACEHOLDER, str(folder)))
    assert scope["labels"][0] == "O" and scope["entity_starts"] and len(scope["articles"]) >= 1
    article = next(a for split in scope["articles"].values() for a in split if a["id"] == scope["row"]["article_id"])
    assert set(scope["entity_starts"]) <= {(e["start"], e["label"]) for e in article["entities"]}
    assert ("silver" in scope) == (release in ("gold and silver", "no gold train"))
    text, label = scope["pair"]
    assert re.fullmatch(r".*\[E1\].+\[/E1\].*", text, re.DOTALL) and "[E2]" in text and "[/E2]" in text
    assert scope["stance_names"] == ["none", "against", "favor"] and label in scope["stance_names"]


MIN_DATASETS = ROOT / ".datasets-min"  # `make test-deps` installs the card's minimum there (requirements-datasets-min.lock)
QUICK_START_CHECK = """
import datasets
print(json.dumps({"version": datasets.__version__, "labels": labels[:1], "pair": pair, "names": stance_names,
                  "entity_starts": len(entity_starts), "articles": sum(len(s) for s in articles.values())}))
"""


def test_the_cards_quick_start_runs_under_the_stated_minimum_datasets(variants: dict[str, Path], tmp_path: Path) -> None:
    """The Quick start, cut out of the card, runs in a fresh process on exactly the `datasets` version the card
    names as the minimum (installed apart, --no-deps, beside the venv's other packages)."""
    import subprocess
    import sys

    folder = variants["gold and silver"]
    card = (folder / "README.md").read_text()
    (stated,) = re.findall(r"Loading needs `datasets>=([0-9.]+)`", card)
    assert (MIN_DATASETS / "datasets").is_dir(), "run `make test-deps` (installs the minimum datasets into .datasets-min/)"
    (block,) = _python_blocks(card, "Quick start")
    code = "import json\n" + block.replace(REPO_PLACEHOLDER, str(folder)) + QUICK_START_CHECK
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(MIN_DATASETS), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["version"] == stated  # the minimum itself, not the venv's newer datasets
    assert out["labels"] == ["O"] and out["entity_starts"] > 0 and out["articles"] > 0
    assert "[E1]" in out["pair"][0] and out["pair"][1] in out["names"]


@pytest.mark.parametrize("release", RELEASES)
def test_the_readmes_loading_code_runs_on_the_release(variants: dict[str, Path], offline_hf, release: str) -> None:  # noqa: F811
    blocks = _python_blocks((ROOT / "README.md").read_text(), "Loading the dataset")
    assert blocks
    for block in blocks:
        assert '"data/dataset"' in block
        scope = _run(block.replace('"data/dataset"', json.dumps(str(variants[release]))))
        assert scope["names"][0] == "O" and len(scope["train"]) >= 1 and len(scope["articles"]) >= 1
        assert ("silver" in scope) == (release in ("gold and silver", "no gold train"))


@pytest.mark.parametrize("release", RELEASES)
def test_the_metadata_says_which_splits_exist_with_their_rows(variants: dict[str, Path], offline_hf,  # noqa: F811
                                                              release: str, tmp_path: Path) -> None:
    """`dataset_info[].splits` and `configs[].data_files` list exactly the non-empty splits, as datasets reads them."""
    folder = variants[release]
    rows = json.loads((folder / "manifest.json").read_text())["rows"]
    for config, splits in rows.items():
        assert sorted(offline_hf.get_dataset_split_names(str(folder), config)) == sorted(splits)
        cache = str(tmp_path / config)  # a fresh cache: the builder's info is the card's, not a previous load's
        info = offline_hf.load_dataset_builder(str(folder), config, cache_dir=cache).info
        assert {s: i.num_examples for s, i in info.splits.items()} == splits
        loaded = offline_hf.load_dataset(str(folder), config, cache_dir=cache)
        assert {s: len(d) for s, d in loaded.items()} == splits
        assert {s: d.info.splits[s].num_bytes for s, d in loaded.items()} == {s: i.num_bytes for s, i in info.splits.items()}


@pytest.mark.parametrize("empty", ["one empty row group", "no row group"])
def test_datasets_cannot_load_an_empty_split_so_none_is_declared(tmp_path: Path, offline_hf, empty: str) -> None:  # noqa: F811
    """Why empty splits are left out: if a `datasets` upgrade makes this pass, ship empty splits instead."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from test_publish import write_params

    from pipeline import publish as stage
    from pipeline.dataset.rows import PARQUET_OPTIONS, features

    feats = features(stage.load_config(write_params(tmp_path)))["entities"]
    row = {"id": "a-0000", "article_id": "a", "sentence_index": 0, "sentence_start": 0, "sentence_end": 2,
           "tokens": ["Hi"], "token_starts": [0], "token_ends": [2], "ner_tags": [0]}
    (tmp_path / "entities").mkdir()
    full, path = "entities/train-00000-of-00001.parquet", "entities/test-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist([row], schema=feats.arrow_schema), tmp_path / full, **PARQUET_OPTIONS)
    if empty == "one empty row group":  # what pyarrow's write_table writes for no rows
        pq.write_table(pa.Table.from_pylist([], schema=feats.arrow_schema), tmp_path / path, **PARQUET_OPTIONS)
    else:  # a valid Parquet file with the schema and no row group at all
        pq.ParquetWriter(tmp_path / path, feats.arrow_schema, **PARQUET_OPTIONS).close()
    assert pq.read_table(tmp_path / path).num_rows == 0  # pyarrow reads it: a valid, empty Parquet file
    with pytest.raises((ValueError, offline_hf.exceptions.DatasetGenerationError)):
        offline_hf.load_dataset("parquet", data_files={"train": str(tmp_path / full), "test": str(tmp_path / path)},
                                features=feats, cache_dir=str(tmp_path / "cache"))


def test_every_configuration_is_listed_with_the_splits_it_has(variants: dict[str, Path]) -> None:
    card = (variants["gold only"] / "README.md").read_text()
    assert "| `entities_silver` | – | – | – | one sentence |" in card
    assert "Not in this release: configs `articles_silver`, `entities_silver`, `stance_silver`." in card
    assert "`dataset_info[].splits`" in card and '(`"train" in ner`) before naming it' in card


def test_the_card_has_every_section_of_the_hub_template(built: Path) -> None:  # noqa: F811
    import huggingface_hub

    template = (Path(huggingface_hub.__file__).parent / "templates" / "datasetcard_template.md").read_text()
    wanted = {h.removesuffix(" [optional]") for h in re.findall(r"^#{2,4} (.+)$", template, flags=re.MULTILINE)
              if not h.endswith("[optional]") or h.startswith(("Citation", "Annotations", "Dataset Sources"))}
    card = (built / "README.md").read_text()
    have = set(re.findall(r"^#{2,4} (.+)$", card, flags=re.MULTILINE))
    assert wanted <= have, wanted - have
    assert "[More Information Needed]" not in card
    assert "```bibtex" in card and "### Data instances" in card and "A row of `stance`:" in card


def test_the_metadata_passes_the_offline_validation_of_datasets_and_huggingface_hub(built: Path) -> None:  # noqa: F811
    import datasets
    import yaml
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs, _NoDuplicateSafeLoader, _split_yaml_from_readme
    from huggingface_hub import DatasetCard, DatasetCardData
    from test_publish import write_params

    from pipeline import publish as stage
    from pipeline.dataset.rows import features

    card = DatasetCard.load(built / "README.md")
    assert isinstance(card.data, DatasetCardData)
    block, _ = _split_yaml_from_readme((built / "README.md").read_text())
    meta = yaml.load(block or "", Loader=_NoDuplicateSafeLoader)  # the loader datasets uses: duplicate keys raise
    assert DatasetCardData(**meta).to_dict() == meta == card.data.to_dict()  # nothing dropped or renamed
    assert (built / meta["license_link"]).is_file() and re.fullmatch(r"[a-z0-9][a-z0-9.-]*", meta["license_name"])
    configs = MetadataConfigs.from_dataset_card_data(card.data)  # raises on a malformed data_files field
    for cfg in configs.values():
        for f in cfg["data_files"]:
            assert sorted(built.glob(f["path"])), f["path"]
    feats = features(stage.load_config(write_params(built.parent)))
    infos = DatasetInfosDict.from_dataset_card_data(card.data)
    assert {n: i.features for n, i in infos.items()} == {n: feats[n.removesuffix("_silver")] for n in configs}
    resources = Path(datasets.__file__).parent / "utils" / "resources"
    known = {name: json.loads((resources / f"{name}.json").read_text())
             for name in ("creators", "languages", "multilingualities", "size_categories")}
    data = card.data.to_dict()
    assert set(data["language_creators"]) <= set(known["creators"]["language"])
    assert set(data["annotations_creators"]) <= set(known["creators"]["annotations"])
    assert set(data["multilinguality"]) <= set(known["multilingualities"])
    assert set(data["size_categories"]) <= set(known["size_categories"])
    assert set(data["language"]) <= set(known["languages"])


def test_sources_leave_out_articles_with_no_source(tmp_path: Path) -> None:
    first = json.loads(LABELED.read_text().splitlines()[0])["id"]
    labeled = _labeled(tmp_path, change=lambda r: r.update(source=None) if r["id"] == first else None)
    card = (build(tmp_path, labeled=labeled)[0] / "README.md").read_text()
    assert "1 named source (news.example.org: 4); 1 of 5 articles record no source" in card
    assert "unknown:" not in card  # "unknown" is not counted as a source


def test_translation_is_derived_from_the_records(tmp_path: Path, built: Path) -> None:  # noqa: F811
    from huggingface_hub import DatasetCard

    plain = DatasetCard.load(built / "README.md")
    assert plain.data.language_creators == ["found"] and "No article records a translation" in plain.text
    first = json.loads(LABELED.read_text().splitlines()[0])["id"]
    labeled = _labeled(tmp_path, change=lambda r: r.update(translated_from="ar") if r["id"] == first else None)
    card = DatasetCard.load(build(tmp_path, labeled=labeled)[0] / "README.md")
    assert card.data.language_creators == ["found", "machine-generated"]
    assert "1 of 5 article(s) record that they were translated into English (from `ar`: 1)" in card.text


def test_sizes_are_articles_and_sentences_and_size_categories_count_the_largest_configs_rows(built: Path) -> None:  # noqa: F811
    from huggingface_hub import DatasetCard

    from pipeline.dataset.card import size_category

    records = [json.loads(line) for line in LABELED.read_text().splitlines()]
    sentences = sum(len(r["sentences"]) for r in records)
    stances = sum(len(r["stances"]) for r in records)
    card = DatasetCard.load(built / "README.md")
    assert f"English ({len(records)} articles, {sentences} sentences)" in card.text
    man = json.loads((built / "manifest.json").read_text())
    pairs = sum(n for c, s in man["rows"].items() if c.startswith("stance") for n in s.values())
    assert pairs > stances  # generated `none` pairs outnumber annotated stances
    largest = max(sum(s.values()) for s in man["rows"].values())
    assert card.data.size_categories == [size_category(largest)]
    assert "multi-class-classification" in card.data.task_ids  # the stance config


def test_size_categories_follow_the_rows_not_the_articles() -> None:
    from pipeline.dataset.card import size_category

    assert [size_category(n) for n in (999, 1_227, 10_000)] == ["n<1K", "1K<n<10K", "10K<n<100K"]


def test_missing_dates_are_counted_and_a_wire_dateline_names_the_agency(tmp_path: Path) -> None:
    lines = LABELED.read_text().splitlines()
    first, second = (json.loads(line)["id"] for line in lines[:2])

    def change(r: dict[str, Any]) -> None:
        if r["id"] == first:
            r["date"] = None
        if r["id"] == second:  # a dateline keeps the offsets: same length as the text it replaces
            r["text"] = "MOSCOW (AP) " + r["text"][len("MOSCOW (AP) "):]

    card = (build(tmp_path, labeled=_labeled(tmp_path, change=change))[0] / "README.md").read_text()
    assert "(1 of 5 articles record no date)" in card
    assert "datelines credit a news agency: AP: 1" in card
    (tmp_path / "plain").mkdir()
    plain = (build(tmp_path / "plain")[0] / "README.md").read_text()
    assert "record no date" not in plain and "news agency" not in plain


def test_the_citation_year_comes_from_the_annotation_snapshot(tmp_path: Path, built: Path) -> None:  # noqa: F811
    card = (built / "README.md").read_text()
    snapshots = {json.loads(line)["provenance"].get("annotation_snapshot") for line in LABELED.read_text().splitlines()}
    years = {m.group(1) for s in snapshots if s and (m := re.search(r"(\d{4})\d{4}T", s))}
    assert years and f"  year = {{{max(years)}}}," in card and f"({max(years)})." in card
    moved = _labeled(tmp_path, change=lambda r: r["provenance"].update(annotation_snapshot="annotations/20301231T000000Z.jsonl")
                     if r["status"] == "gold" else None)
    assert "  year = {2030}," in (build(tmp_path, labeled=moved)[0] / "README.md").read_text()


def test_the_quality_table_names_the_sample_the_metrics_scored(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    pre = json.loads((ROOT / "tests/fixtures/publish/metrics/preannotation.json").read_text())
    (metrics / "preannotation.json").write_text(json.dumps(pre | {"gold_articles": 1, "excluded_train_gold_articles": 2}))
    card = (build(tmp_path, metrics=metrics)[0] / "README.md").read_text()
    assert "the 1 gold articles it scores (2 gold article(s) of the train split left out" in card
    assert "**Small sample.** This table rests on 1 gold article(s)" in card


def test_quality_figures_give_their_sample_size_and_warn_when_it_is_small(built: Path) -> None:  # noqa: F811
    card = (built / "README.md").read_text()
    assert f"**Small sample.** This table rests on 2 gold article(s) (fewer than {SMALL_SAMPLE})" in card
    assert "**Small sample.** Agreement rests on 1 gold article(s)" in card
    assert "net count of gold stances, favour minus against" in card and "grey cells have no gold stance" in card


def test_the_card_states_the_candidate_cap_and_counts_the_pairs_it_left_out(tmp_path: Path, built: Path) -> None:  # noqa: F811
    card = (built / "README.md").read_text()
    assert ("at most 12 per sentence (params `publish.max_candidates_per_sentence`): no sentence of this release "
            "reaches it, so every candidate pair is a row.") in card
    folder, man = build(tmp_path, max_candidates=1)
    every = json.loads((built / "manifest.json").read_text())["rows"]
    left_out = sum(every[c][s] - man["rows"][c][s] for c in every if c.startswith("stance") for s in every[c])
    assert left_out > 0
    assert (f"at most 1 per sentence (params `publish.max_candidates_per_sentence`): {left_out} candidate pair(s) past "
            "that cap are left out of this release") in (folder / "README.md").read_text()


def test_the_card_says_how_the_gold_was_made_and_how_many_articles_were_adjudicated(tmp_path: Path,
                                                                                    built: Path) -> None:  # noqa: F811
    card = (built / "README.md").read_text()
    assert "How the 2 gold articles were labelled" in card  # the fixture predates `from_prediction`
    assert ("0 corrected from the proposals (every annotator started from them), 0 labelled from scratch (no "
            "annotator did), 2 not recorded (a version whose snapshot does not say).") in card
    assert "labelled by more than one annotator, before adjudication" in card and "0 of these articles were adjudicated" in card

    def change(r: dict[str, Any]) -> None:
        if r["status"] != "gold":
            return
        two = len(r["annotations"]) == 2
        for a in r["annotations"]:
            a["from_prediction"] = two  # the pair of annotators corrected the proposals; the single one drew afresh
        r["provenance"]["resolution"] = "ground_truth"  # settled by a reviewer; adjudicated only where compared
        if two:
            r["annotations"].append({**r["annotations"][0], "annotator": "annotator-9", "ground_truth": True})
            r["annotators"].append("annotator-9")

    folder = build(tmp_path, labeled=_labeled(tmp_path, change=change))[0]
    card = (folder / "README.md").read_text()
    assert ("1 corrected from the proposals (every annotator started from them), 1 labelled from scratch (no "
            "annotator did).") in card and "not recorded" not in card
    assert "Agreement** on the 1 article(s) labelled by more than one annotator, before adjudication" in card
    assert "1 of these articles were adjudicated" in card


def test_the_card_states_the_oldest_datasets_that_loads_it(built: Path) -> None:  # noqa: F811
    import datasets
    from packaging.version import Version

    from pipeline.dataset.sections import MIN_DATASETS

    assert f"Loading needs `datasets>={MIN_DATASETS}`" in (built / "README.md").read_text()
    assert Version(datasets.__version__) >= Version(MIN_DATASETS) >= Version("4")  # `List` features are 4.0's


def test_the_card_says_the_gold_follows_spacys_conventions(built: Path) -> None:  # noqa: F811
    card = (built / "README.md").read_text()
    bias = card.split("## Bias, Risks, and Limitations", 1)[1].split("\n## ", 1)[0]
    assert "follows spaCy's conventions" in bias and "anchoring" in bias


def test_the_figure_greys_the_cells_with_no_gold_stance(tmp_path: Path) -> None:
    """Net 0 (white) means favour and against balance; a cell with no gold stance is grey, not white."""
    import matplotlib.image
    import numpy as np

    from pipeline.dataset.figure import stance_by_actor

    records = [json.loads(line) for line in LABELED.read_text().splitlines()]
    stance_by_actor(records, tmp_path / "figure.png", 16)
    rgb = np.round(matplotlib.image.imread(tmp_path / "figure.png")[..., :3] * 255).astype(int)
    grey = (rgb == (217, 217, 217)).all(axis=-1).mean()
    assert grey > 0.1, grey  # the fixture's 6 x 4 matrix has 18 empty cells


SEESAW_LICENCE = "CC BY-NC-SA 4.0 (SEESAW); CC BY 4.0 (learned from this project's annotations)"


def test_stances_from_the_rules_keep_the_annotations_licence(built: Path) -> None:  # noqa: F811
    card = (built / "README.md").read_text()
    assert "comes from the project's rules alone" in card and "CC BY-NC-SA" not in card
    assert "CC BY-NC-SA" not in (built / "LICENSE").read_text()


def test_stances_from_the_seesaw_model_are_nc_sa_in_the_card_and_the_licence(tmp_path: Path) -> None:
    def from_model(r: dict[str, Any]) -> None:
        if r["status"] == "silver":
            r["provenance"].update(stance_model="m1", stance_trained_on="seesaw:train,gold:train",
                                   stance_training_data="abc", stance_model_licence=SEESAW_LICENCE)

    records = [json.loads(line) for line in LABELED.read_text().splitlines()]
    silver = sum(r["status"] == "silver" for r in records)
    folder = build(tmp_path, labeled=_labeled(tmp_path, change=from_model))[0]
    card = (folder / "README.md").read_text()
    assert f"the stances of {silver} silver article" in card and "rules alone" not in card
    assert "those predictions are under CC BY-NC-SA 4.0" in card
    licence = (folder / "LICENSE").read_text()
    assert "3. Exception to 2" in licence and "https://creativecommons.org/licenses/by-nc-sa/4.0/" in licence
