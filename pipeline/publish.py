"""publish stage: data/labeled.jsonl -> a Hub-ready Hugging Face dataset folder (data/dataset/), optionally pushed.

Parquet files per config and split (pipeline/dataset/rows.py), a dataset card generated from the pipeline's
records (pipeline/dataset/card.py), an actor-by-actor stance figure (pipeline/dataset/figure.py) and a manifest
for the changelog of the next version (pipeline/dataset/release.py). Rebuilding from the same inputs gives
identical bytes; pushing to the Hub is pipeline/dataset/hub.py.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from pipeline.common.config import MAX_INT, Count, Section, Share
from pipeline.common.contract import (
    NO_STANCE,
    EntityLabels,
    StanceEnds,
    StanceLabels,
    labeled_problem,
    stage_config,
)
from pipeline.common.errors import BadRecords, ConfigError, InputError
from pipeline.common.jsonl import read_json, read_jsonl, umask_mode, write_json
from pipeline.common.lines import line_starts, read_jsonl_at
from pipeline.common.provenance import PACKAGE, file_digest
from pipeline.dataset import hub
from pipeline.dataset.card import CardContext, render
from pipeline.dataset.figure import FIGURE, stance_by_actor
from pipeline.dataset.license import LICENSE_FILE, license_problem, license_text
from pipeline.dataset.release import (
    MANIFEST,
    SEMVER,
    changelog,
    manifest,
    previous_manifest,
    release_fields,
    write_manifest,
)
from pipeline.dataset.rows import features, write_configs
from pipeline.dataset.source import repo_source, web_url
from pipeline.dataset.summaries import Summaries
from pipeline.dataset.textfree import HYDRATE_FILE, Shape, recipe
from pipeline.dataset.textfree import features as text_free_features

STAGE = "publish"
# The annotation guidelines travel with the data, so the card can link them on the Hub.
GUIDELINES = "guidelines.md"
# The evaluate stage's metrics files the card quotes (listed as publish deps in dvc.yaml).
CARD_METRICS = ("preannotation",)


def _semver(version: str) -> str:
    """`version`, if it is MAJOR.MINOR.PATCH and nothing else (a final line break included)."""
    if not SEMVER.fullmatch(version):
        raise ValueError(f"version must be a semantic version MAJOR.MINOR.PATCH, got {version!r}")
    return version


def _repository_url(value: str | None) -> str | None:
    """`value`, if it is null or an http(s) URL with a host and no credentials."""
    if value is not None and web_url(value) is None:
        raise ValueError(f"expected null or an http(s) URL with no user or password, got {value!r}")
    return value


def _gated(value: object) -> object:
    """`value`, if it is false, auto or manual (checked here: pydantic's literal false would take 0 as well)."""
    if not (value is False or value in ("auto", "manual")):
        raise ValueError(f"expected false, auto or manual, got {value!r}")
    return value


class PublishConfig(Section):
    """The `publish:` section of params.yaml, plus the label sets owned by `preannotate:` (one source of truth)."""

    version: Annotated[str, AfterValidator(_semver)]
    pretty_name: Annotated[str, Field(min_length=1)]
    license: str
    license_name: str  # a licence id (Hub spec for `license: other`); the card links the LICENSE file
    max_candidates_per_sentence: Annotated[int, Field(ge=0, le=MAX_INT)]
    figure_max_actors: Annotated[int, Field(ge=2, le=MAX_INT)]
    rows_per_shard: Count
    max_bad_share: Share
    entity_labels: EntityLabels  # from preannotate.entity_labels: the labels Label Studio offers
    stance_ends: StanceEnds  # from preannotate.stance_ends: labels a stance holder or target may have
    stance_labels: StanceLabels  # from preannotate.stance_labels: the relation labels Label Studio offers
    # Hub access of the repo a push creates or updates. `private` left out: private, as the licence is research-only.
    private: bool | None = None
    gated: Annotated[Literal[False, "auto", "manual"], BeforeValidator(_gated)] = False  # "auto": approved at once; "manual": the owner approves each
    include_text: bool = True  # false: a text-free release (pipeline/dataset/textfree.py), rebuilt with `hydrate`
    # The card's repository URL; null: `git remote get-url origin` (pipeline/dataset/source.py says why params win).
    repository_url: Annotated[str | None, AfterValidator(_repository_url)] = None

    @model_validator(mode="after")
    def _licence(self) -> Self:
        if problem := license_problem(self.license, self.license_name):
            raise ValueError(problem)
        return self

    @property
    def access(self) -> hub.Access:
        """The Hub access a push sets: private unless params say otherwise (the texts are research-only)."""
        return hub.Access(private=True if self.private is None else self.private,
                          gated=self.gated if isinstance(self.gated, str) else False)

    @property
    def bio_tags(self) -> list[str]:
        """ClassLabel names of `ner_tags`: O, then B-/I- per entity label in params order (stable ids)."""
        return ["O"] + [f"{p}-{label}" for label in self.entity_labels for p in ("B", "I")]

    @property
    def stance_classes(self) -> tuple[str, ...]:
        """ClassLabel names of the stance `label`: `none` (a candidate pair), then the stance labels in params order."""
        return (NO_STANCE, *self.stance_labels)


# What the card, figure, licence and manifest read of an article (pipeline/dataset/): the first pass stores only
# this, on disk (pipeline/dataset/summaries.py); texts, sentences and Parquet rows exist one article at a time in
# the second. A silver article keeps its entity and stance labels only (a PERSON keeps its name), a gold one its
# labels and annotations in full.
SUMMARY_KEYS = ("id", "status", "split", "date", "source", "story_id", "annotators", "agreement", "provenance",
                "translated_from")
GOLD_KEYS = ("entities", "stances", "annotations", "predictions")
# A wire dateline opening the text, "WASHINGTON (AP) —": the agency wrote the story, whatever site carried it.
WIRE_DATELINE = re.compile(r"^[A-Z][A-Z .,'’-]{1,40}\((AP|Reuters|AFP|UPI|dpa|Xinhua|TASS|Interfax|ANI|PTI)\)")


def summarize(rec: dict[str, Any]) -> dict[str, Any]:
    """An article's summary: SUMMARY_KEYS, release_fields and its sentence count; a silver one keeps label names only."""
    out = {k: rec[k] for k in SUMMARY_KEYS if k in rec} | release_fields(rec) | {"n_sentences": len(rec["sentences"])}
    if wire := WIRE_DATELINE.match(rec["text"].lstrip()):
        out["wire"] = wire.group(1)
    if rec["status"] == "gold":
        return out | {k: rec[k] for k in GOLD_KEYS if k in rec}
    out["entities"] = [{"label": e["label"], "text": e["text"]} if e["label"] == "PERSON" else {"label": e["label"]}
                       for e in rec["entities"]]  # the card counts distinct PERSON names (sections.personal_information)
    out["stances"] = [{"label": s["label"]} for s in rec["stances"]]
    return out


def scan_labeled(path: Path, cfg: PublishConfig, work: Path) -> Summaries:
    """First pass: the summary of every publishable record, stored in a database in the folder `work` (sorted by
    id on reading) with where each record is in the file for the second; bad records are reported, skipped and counted."""
    bad = BadRecords(STAGE, cfg.max_bad_share)
    found = Summaries(work / "summaries.sqlite")
    try:
        for lineno, rec in read_jsonl(path, bad):
            if problem := labeled_problem(rec, entity_labels=cfg.entity_labels, stance_labels=cfg.stance_labels):
                bad.add(f"{path}:{lineno}", problem)
                continue
            found.add(rec["id"], lineno, summarize(rec))
        bad.check()
        found.locate(line_starts(path))
    except BaseException:
        found.close()
        raise
    return found


def read_metrics(folder: Path | None) -> dict[str, Any]:
    """The evaluate stage's metrics the card quotes (CARD_METRICS), by file stem; those absent are left out."""
    out: dict[str, Any] = {}
    if folder is None or not folder.is_dir():
        return out
    for path in (folder / f"{name}.json" for name in CARD_METRICS):
        if not path.is_file():
            continue
        out[path.stem] = read_json(path, "metrics file")
        if not isinstance(out[path.stem], dict):
            raise InputError(f"{path}: metrics file must be a JSON object, got {type(out[path.stem]).__name__}")
    return out


def build(labeled: Path, output: Path, cfg: PublishConfig, *, metrics: Path | None, releases: Path,
          guidelines: Path | None, repo: Path = PACKAGE.parent) -> dict[str, Any]:
    """Build the dataset folder at `output` (atomically replaced) and return its manifest; `repo`: the code's git checkout."""
    guidelines_text = None
    if guidelines is not None:
        if not guidelines.is_file():
            raise InputError(f"{guidelines}: guidelines file not found")
        guidelines_text = guidelines.read_text(encoding="utf-8")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{output.name}.scan.", dir=output.parent) as work:
        records = scan_labeled(labeled, cfg, Path(work))  # summaries only, on disk: memory stays flat in the corpus
        try:
            return _write(labeled, output, cfg, records, metrics=metrics, releases=releases,
                          guidelines_text=guidelines_text, repo=repo)
        finally:
            records.close()


def _write(labeled: Path, output: Path, cfg: PublishConfig, records: Summaries, *, metrics: Path | None,
           releases: Path, guidelines_text: str | None, repo: Path) -> dict[str, Any]:
    """The second pass: the dataset folder from the records at `records.where()`, the card from the summaries."""
    if not records:
        raise InputError(f"{labeled}: no publishable articles")
    feats = features(cfg) if cfg.include_text else text_free_features(features(cfg))
    shape = None if cfg.include_text else Shape(feats)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    tmp.chmod(umask_mode(0o777))  # the published folder gets the user's umask, not mkdtemp's 0o700
    try:
        written = write_configs(read_jsonl_at(labeled, records.where()), feats, tmp, cfg, shape)
        if not cfg.include_text:
            write_json(tmp / HYDRATE_FILE, recipe(cfg), sort_keys=True)
        stance_by_actor(records, tmp / FIGURE, cfg.figure_max_actors)
        if guidelines_text is not None:
            (tmp / GUIDELINES).write_text(guidelines_text, encoding="utf-8")
        (tmp / LICENSE_FILE).write_text(license_text(cfg.pretty_name, cfg.license_name, records), encoding="utf-8")
        files = {p.relative_to(tmp).as_posix(): file_digest(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        man = manifest(records, cfg.version, files)
        man["rows"] = written.counts
        hub.check_record(releases / f"manifest-{cfg.version}.json", man)  # a recorded version is never rebuilt with other data
        context = CardContext(
            cfg=cfg, records=records, counts=written.counts, features=feats, stats=dict(sorted(written.stats.items())),
            metrics=read_metrics(metrics), changelog=changelog(man, previous_manifest(releases, cfg.version)),
            labeled_md5=file_digest(labeled, "md5"), labeled_path=labeled.as_posix(),
            guidelines=guidelines_text, guidelines_path=GUIDELINES if guidelines_text is not None else None,
            figure=FIGURE, examples=written.examples(), split_bytes=written.split_bytes,
            text_free=not cfg.include_text,
            source=repo_source(repo, cfg.repository_url),
        )
        (tmp / "README.md").write_text(render(context), encoding="utf-8")
        write_manifest(tmp / MANIFEST, man)
        if output.exists():
            shutil.rmtree(output)
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return man


def load_config(params: Path) -> PublishConfig:
    """The `publish:` section with the label sets (entity labels, stance ends, stance labels) of `preannotate:`."""
    return stage_config(PublishConfig, STAGE, params)


def main(input: Path, output: Path, params: Path, metrics: Path | None, releases: Path, guidelines: Path | None,
         push_to: str | None, dry_run: bool) -> None:
    """Build the dataset folder; with `push_to`, upload it (or with `dry_run`, list what would be uploaded)."""
    cfg = load_config(params)
    if dry_run and not push_to:
        raise ConfigError("--dry-run only makes sense with --push REPO_ID")
    if push_to and not dry_run:
        hub.hf_token()  # fail before the build when the token is missing
    man = build(input, output, cfg, metrics=metrics, releases=releases, guidelines=guidelines)
    rows = {c: sum(s.values()) for c, s in man["rows"].items()}
    print(f"{STAGE}: wrote {output} v{cfg.version}: " + ", ".join(f"{c} {n}" for c, n in sorted(rows.items())),
          file=sys.stderr)
    if push_to and dry_run:
        lines, plan = hub.dry_run(output, push_to, man, releases, cfg.access)
        print("dry run: nothing uploaded, no tag created")
        print("\n".join(lines))
        if plan.refused:
            raise ConfigError(f"{push_to}: {plan.refused}")
    elif push_to:
        record, plan = hub.push(output, push_to, man, releases, cfg.access)
        done = "already released with identical content" if plan.done else "released"
        print(f"{STAGE}: {push_to} v{cfg.version} {done}; recorded {record}", file=sys.stderr)
