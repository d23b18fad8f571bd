"""Releases against a fake of the Hub's HTTP API (tests/fakehub.py): tags checked before any write, one commit per
release tagged by its id, an interrupted release finished by a rerun, private by default, the LICENSE shipped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline import publish as stage
from pipeline.common.errors import ConfigError, PipelineError
from pipeline.dataset import hub
from pipeline.dataset.license import LICENSE_FILE
from tests.fakehub import FakeHub
from tests.test_publish import FIXTURES, LABELED, write_params

REPO = "org/geonews"
TOKEN = "hf_fake_token_1234"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A running fake Hub that huggingface_hub talks to (HF_ENDPOINT), with LFS uploads (Xet is not faked)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    with FakeHub(token=TOKEN) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield server


def params(folder: Path, version: str = "0.1.0", **publish: Any) -> Path:
    """The test params with some `publish:` keys replaced (private, gated, license_name, pretty_name ...)."""
    path = write_params(folder, version)
    text = path.read_text()
    for key, value in publish.items():
        lines = [line for line in text.splitlines() if line.startswith(f"  {key}:")]
        text = text.replace(lines[0], f"  {key}: {value}") if lines else text.replace("publish:\n", f"publish:\n  {key}: {value}\n")
    path.write_text(text)
    return path


def build(folder: Path, name: str, version: str = "0.1.0", labeled: Path = LABELED, metrics: Path | None = None,
          guidelines: Path | None = None, **publish: Any) -> tuple[Path, dict[str, Any], stage.PublishConfig]:
    cfg = stage.load_config(params(folder, version, **publish))
    out = folder / name
    man = stage.build(labeled, out, cfg, metrics=metrics or FIXTURES / "metrics", releases=folder / "no-releases",
                      guidelines=guidelines)
    return out, man, cfg


def push(out: Path, man: dict[str, Any], cfg: stage.PublishConfig, releases: Path) -> tuple[Path, hub.Plan]:
    return hub.push(out, REPO, man, releases, cfg.access)


def commits(fake: FakeHub) -> list[str]:
    return [m for m in fake.repos[REPO].messages.values() if m != "initial commit"]


def assert_holds(fake: FakeHub, revision: str, folder: Path) -> None:
    """The repo at `revision` holds exactly the folder's files (and the Hub's .gitattributes)."""
    local = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    remote = fake.files(REPO, revision)
    assert remote.pop(".gitattributes")
    assert remote == local


def test_first_release_creates_a_private_repo_commits_once_and_tags_that_commit(tmp_path: Path, fake: FakeHub) -> None:
    out, man, cfg = build(tmp_path, "ds")
    releases = tmp_path / "releases"
    record, plan = push(out, man, cfg, releases)
    repo = fake.repos[REPO]
    assert repo.private and repo.gated is False
    assert commits(fake) == ["Release 0.1.0"]
    assert repo.tags == {"v0.1.0": repo.branches["main"]}
    assert_holds(fake, "v0.1.0", out)
    tree = {e["path"]: e for e in fake._tree(repo, "v0.1.0", "", {"recursive": ["true"]})[1] if e["type"] == "file"}
    assert all("lfs" in e for p, e in tree.items() if p.endswith((".parquet", ".png")))  # stored as LFS
    assert "lfs" not in tree["README.md"] and "lfs" not in tree[LICENSE_FILE]
    assert json.loads(record.read_text()) == man | {"hub": {"repo": REPO, "tag": "v0.1.0", "commit": repo.tags["v0.1.0"],
                                                            "git_commit": hub.git_commit()}}
    assert not plan.done
    create = next(i for i, c in enumerate(fake.calls) if c == ("POST", "/api/repos/create"))
    assert all(m == "GET" for m, _ in fake.calls[:create])  # the checks read before the first write


def test_fresh_clone_rerun_of_an_identical_release_writes_nothing(tmp_path: Path, fake: FakeHub) -> None:
    out, man, cfg = build(tmp_path, "ds")
    push(out, man, cfg, tmp_path / "releases")
    fake.calls.clear()
    (tmp_path / "clone").mkdir()
    again, man2, _ = build(tmp_path / "clone", "ds")
    record, plan = push(again, man2, cfg, tmp_path / "clone" / "releases")  # a fresh clone: releases/ is empty
    assert plan.done and fake.writes() == []
    assert record.is_file()  # the clone records the manifest of the version it found released
    assert commits(fake) == ["Release 0.1.0"]


def test_fresh_clone_with_other_data_under_a_released_version_is_refused_before_any_write(
        tmp_path: Path, fake: FakeHub) -> None:
    out, man, cfg = build(tmp_path, "ds")
    push(out, man, cfg, tmp_path / "releases")
    main = fake.repos[REPO].branches["main"]
    smaller = tmp_path / "labeled.jsonl"
    smaller.write_text("\n".join(LABELED.read_text().splitlines()[1:]) + "\n")
    other, man2, _ = build(tmp_path, "other", labeled=smaller)
    fake.calls.clear()
    with pytest.raises(ConfigError, match=r"tag v0\.1\.0 already holds other content .*bump publish\.version"):
        push(other, man2, cfg, tmp_path / "clone-releases")
    assert fake.writes() == [] and fake.repos[REPO].branches["main"] == main
    assert not (tmp_path / "clone-releases").exists()


def test_a_card_only_change_is_refused_under_the_same_version_and_commits_only_the_card_under_the_next(
        tmp_path: Path, fake: FakeHub) -> None:
    out, man, cfg = build(tmp_path, "ds")
    releases = tmp_path / "releases"
    push(out, man, cfg, releases)
    # without the metrics files the card scores the pre-annotation itself: the card changes, no data file does
    card_only, man2, _ = build(tmp_path, "card", metrics=tmp_path / "no-metrics")
    assert man2["files"] == man["files"] and (card_only / "README.md").read_text() != (out / "README.md").read_text()
    fake.calls.clear()
    with pytest.raises(ConfigError, match=r"tag v0\.1\.0 already holds other content \(0 added, 1 changed, 0 deleted, e\.g\. README\.md\)"):
        push(card_only, man2, cfg, releases)  # this clone's record matches: only the Hub sees the card changed
    assert fake.writes() == []
    v2, man3, cfg3 = build(tmp_path, "v2", version="0.1.1", metrics=tmp_path / "no-metrics")
    _, plan = push(v2, man3, cfg3, releases)
    assert plan.changes == hub.Diff(changed=("README.md", "manifest.json"))  # the manifest names its version
    assert not any(p.startswith("/lfs-upload/") for _, p in fake.writes())  # no data file uploaded again
    repo = fake.repos[REPO]
    assert repo.tags["v0.1.1"] == repo.branches["main"] != repo.tags["v0.1.0"]
    assert_holds(fake, "v0.1.0", out)
    assert_holds(fake, "v0.1.1", v2)


def test_a_version_this_clone_recorded_with_other_data_is_refused_before_asking_the_hub(
        tmp_path: Path, fake: FakeHub) -> None:
    out, man, cfg = build(tmp_path, "ds")
    push(out, man, cfg, tmp_path / "releases")
    fake.calls.clear()
    with pytest.raises(ConfigError, match=r"version 0\.1\.0 was already published with other content"):
        push(out, {**man, "files": {"other.parquet": "x"}}, cfg, tmp_path / "releases")
    assert fake.calls == []


def test_a_version_below_the_highest_tag_is_refused(tmp_path: Path, fake: FakeHub) -> None:
    out, man, cfg = build(tmp_path, "ds", version="0.2.0")
    push(out, man, cfg, tmp_path / "releases")
    old, man2, cfg2 = build(tmp_path, "old", version="0.1.9", guidelines=None, pretty_name="Older")
    fake.calls.clear()
    with pytest.raises(ConfigError, match=r"version 0\.1\.9 is lower than the highest released version v0\.2\.0"):
        push(old, man2, cfg2, tmp_path / "releases")
    assert fake.writes() == []


@pytest.mark.parametrize("failing", ["/tag/", "/commit/"])
def test_an_interrupted_release_is_finished_by_running_it_again(tmp_path: Path, fake: FakeHub, failing: str) -> None:
    out, man, cfg = build(tmp_path, "ds")
    releases = tmp_path / "releases"
    fake.fail[failing] = 1
    with pytest.raises(PipelineError, match="run the same command again" if failing == "/tag/" else "push to org/geonews failed"):
        push(out, man, cfg, releases)
    assert fake.repos[REPO].tags == {} and not releases.exists()
    uploads = [p for _, p in fake.calls if p.startswith("/lfs-upload/")]
    _, plan = push(out, man, cfg, releases)
    repo = fake.repos[REPO]
    assert commits(fake) == ["Release 0.1.0"]  # the rerun made no second commit when the first one landed
    assert repo.tags == {"v0.1.0": repo.branches["main"]}
    assert_holds(fake, "v0.1.0", out)
    assert (plan.changes == hub.Diff()) == (failing == "/tag/")
    assert [p for _, p in fake.calls if p.startswith("/lfs-upload/")] == uploads  # uploaded objects are not sent twice


def test_a_release_deletes_files_the_folder_no_longer_has(tmp_path: Path, fake: FakeHub) -> None:
    guidelines = tmp_path / "rules.md"
    guidelines.write_text("# Guidelines\n\n## Stance\n\nHolder opposes target.\n")
    out, man, cfg = build(tmp_path, "ds", guidelines=guidelines)
    push(out, man, cfg, tmp_path / "releases")
    v2, man2, cfg2 = build(tmp_path, "v2", version="0.2.0")
    _, plan = push(v2, man2, cfg2, tmp_path / "releases")
    assert plan.changes.deleted == (stage.GUIDELINES,)
    assert_holds(fake, "v0.2.0", v2)
    assert stage.GUIDELINES in fake.files(REPO, "v0.1.0")


def test_access_follows_params_on_creation_and_on_a_later_release(tmp_path: Path, fake: FakeHub) -> None:
    out, man, cfg = build(tmp_path, "ds", private="false", gated="manual")
    push(out, man, cfg, tmp_path / "releases")
    repo = fake.repos[REPO]
    assert (repo.private, repo.gated) == (False, "manual")
    v2, man2, cfg2 = build(tmp_path, "v2", version="0.2.0", private="true", gated="false", pretty_name="Renamed")
    push(v2, man2, cfg2, tmp_path / "releases")
    assert (repo.private, repo.gated) == (True, False)
    settings = [p for m, p in fake.writes() if p.endswith("/settings")]
    assert len(settings) == 2


def test_a_private_repo_is_unreadable_without_the_token(tmp_path: Path, fake: FakeHub,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    out, man, cfg = build(tmp_path, "ds")
    push(out, man, cfg, tmp_path / "releases")
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.chdir(tmp_path)  # no .env here
    lines, plan = hub.dry_run(out, REPO, man, tmp_path / "other", cfg.access)
    assert not plan.state.exists and lines[-1] == "(no HF_TOKEN: a private repo reads as absent)"


def test_dry_run_prints_the_remote_state_and_writes_nothing(tmp_path: Path, fake: FakeHub,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    p = params(tmp_path)
    releases = tmp_path / "releases"
    stage.main(input=LABELED, output=tmp_path / "ds", params=p, metrics=FIXTURES / "metrics", releases=releases,
               guidelines=None, push_to=REPO, dry_run=True)
    out = capsys.readouterr().out
    assert "repo: org/geonews (dataset): does not exist; would be created private, not gated" in out
    assert "tag v0.1.0: does not exist; would be created on the release commit (" in out
    assert "  + entities/train-00000-of-00001.parquet" in out and "  + README.md" in out and "  + LICENSE" in out
    assert fake.writes() == [] and REPO not in fake.repos and not releases.exists()
    stage.main(input=LABELED, output=tmp_path / "ds", params=p, metrics=FIXTURES / "metrics", releases=releases,
               guidelines=None, push_to=REPO, dry_run=False)
    capsys.readouterr()
    fake.calls.clear()
    with pytest.raises(ConfigError, match="already holds other content"):
        stage.main(input=LABELED, output=tmp_path / "ds", params=p, metrics=tmp_path / "none", releases=releases,
                   guidelines=None, push_to=REPO, dry_run=True)
    out = capsys.readouterr().out
    assert "repo: org/geonews (dataset): exists, private, not gated" in out and "tags: 1, highest v0.1.0" in out
    assert "tag v0.1.0: refused: tag v0.1.0 already holds other content (0 added, 1 changed" in out
    assert fake.writes() == []


def test_the_cli_dry_run_prints_the_state_exits_2_on_a_refused_release_and_never_the_token(tmp_path: Path, fake: FakeHub) -> None:
    p = params(tmp_path, version="0.2.0")
    out, man, cfg = build(tmp_path, "ds", version="0.2.0")
    push(out, man, cfg, tmp_path / "releases")
    p.write_text(p.read_text().replace("version: 0.2.0", "version: 0.1.0"))
    env = {**os.environ, "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0", "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "pipeline", "publish", "--input", str(LABELED), "--output", str(tmp_path / "cli"),
            "--metrics", str(FIXTURES / "metrics"), "--releases", str(tmp_path / "releases"), "--params", str(p),
            "--guidelines", str(ROOT / "resources" / "guidelines.md"), "--push", REPO]
    run = subprocess.run([*base, "--dry-run"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
                         check=False)
    assert run.returncode == 2, run.stderr
    assert "version 0.1.0 is lower than the highest released version v0.2.0" in run.stderr.splitlines()[-1]
    assert "Traceback" not in run.stderr and TOKEN not in run.stdout + run.stderr
    assert "tags: 1, highest v0.2.0" in run.stdout and "tag v0.1.0: refused: " in run.stdout
    assert commits(fake) == ["Release 0.2.0"]


def test_licence_fields_follow_the_hub_spec_and_the_license_file_ships(tmp_path: Path) -> None:
    from huggingface_hub import DatasetCard

    out, man, _ = build(tmp_path, "ds", license_name="geonews-research-only")
    data = DatasetCard.load(out / "README.md").data
    assert (data.license, data.license_name, data.license_link) == ("other", "geonews-research-only", LICENSE_FILE)
    text = (out / LICENSE_FILE).read_text()
    assert LICENSE_FILE in man["files"]
    assert "copyright of their publishers:\n  - news.example.org" in text and "non-commercial research only" in text
    assert "CC BY 4.0" in text and "geonews-research-only" in text


@pytest.mark.parametrize(("key", "value", "message"), [
    ("license_name", "'research-only (texts copyrighted)'", "license_name must be a licence id"),
    ("license", "cc-by-4.0", "license must be 'other'"),
    ("gated", "true", r"publish\.gated: expected false, auto or manual, got True$"),
    ("gated", "0", r"publish\.gated: expected false, auto or manual, got 0$"),
    ("gated", "always", r"publish\.gated: expected false, auto or manual, got 'always'$"),
    ("private", "yes please", r"publish\.private: expected bool, got str"),
])
def test_bad_licence_and_access_params_stop_at_once(tmp_path: Path, key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        stage.load_config(params(tmp_path, **{key: value}))


def test_access_defaults_to_private_for_the_research_only_licence(tmp_path: Path) -> None:
    path = params(tmp_path)
    path.write_text("\n".join(line for line in path.read_text().splitlines() if not line.startswith(("  private:", "  gated:"))))
    cfg = stage.load_config(path)
    assert cfg.access == hub.Access(private=True, gated=False)


def test_the_readmes_dry_run_example_is_what_the_dry_run_prints(tmp_path: Path, fake: FakeHub,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """docs/publishing.md "Releasing a version": a card-only change after v0.1.0, dry-run as v0.1.1 (byte sizes aside)."""
    import re

    out, man, cfg = build(tmp_path, "ds", version="0.1.0")
    push(out, man, cfg, tmp_path / "releases")
    capsys.readouterr()
    stage.main(input=LABELED, output=tmp_path / "next", params=params(tmp_path, "0.1.1"), metrics=tmp_path / "none",
               releases=tmp_path / "releases", guidelines=ROOT / "resources" / "guidelines.md", push_to=REPO,
               dry_run=True)
    sizes = lambda line: re.sub(r"[\d,]+ bytes", "N bytes", line)  # noqa: E731
    printed = [sizes(line.replace(REPO, "my-org/geonews")) for line in capsys.readouterr().out.splitlines()]
    readme = (ROOT / "docs" / "publishing.md").read_text().split("**The dry run shows the Hub's side**", 1)[1]
    example = re.search(r"```text\n(.*?)```", readme, flags=re.DOTALL)
    assert example
    shown = [sizes(line) for line in example.group(1).splitlines() if line.strip() != "..."]
    it = iter(printed)
    assert all(line in it for line in shown), (shown, printed)  # every line shown, in the printed order


def cli_push(tmp_path: Path, endpoint: str, dry_run: bool) -> subprocess.CompletedProcess[str]:
    """`python -m pipeline publish --push REPO` (with `--dry-run`) against `endpoint`, from tmp_path."""
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_TOKEN": TOKEN, "HF_HUB_OFFLINE": "0",
           "HF_HUB_DISABLE_XET": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pipeline", "publish", "--input", str(LABELED), "--output", str(tmp_path / "cli"),
           "--metrics", str(FIXTURES / "metrics"), "--releases", str(tmp_path / "releases"), "--params",
           str(params(tmp_path)), "--guidelines", str(ROOT / "resources" / "guidelines.md"), "--push", REPO]
    return subprocess.run([*cmd, *(["--dry-run"] if dry_run else [])], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300, check=False)


def test_an_unreachable_hub_is_one_line_and_exit_5_in_the_dry_run_and_the_push(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on once this closes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for dry_run in (True, False):
        run = cli_push(tmp_path, f"http://127.0.0.1:{port}", dry_run)
        assert run.returncode == 5, run.stderr
        assert "Traceback" not in run.stderr and TOKEN not in run.stdout + run.stderr
        last = run.stderr.splitlines()[-1]
        assert last.startswith("error: ") and f"the Hub at http://127.0.0.1:{port} is unreachable" in last
        assert "Connection refused" in last
    assert not (tmp_path / "releases").exists()


@pytest.mark.parametrize(("status", "where", "dry_run", "message"), [
    (403, "/api/repos/create", False, "403 Forbidden: the Hub refused HF_TOKEN this repo"),
    (403, "/commit/", False, "403 Forbidden: the Hub refused HF_TOKEN this repo"),
    (429, "/api/datasets/", True, "429 Too Many Requests: the Hub is rate-limiting this token; retry after 1 s"),
    (429, "/api/repos/create", False, "429 Too Many Requests: the Hub is rate-limiting this token; retry after 1 s"),
])
def test_a_refusing_hub_is_one_line_and_exit_5(tmp_path: Path, fake: FakeHub, status: int, where: str,
                                                dry_run: bool, message: str) -> None:
    fake.refuse[where] = (status, {"Retry-After": "1"} if status == 429 else {})
    run = cli_push(tmp_path, fake.url, dry_run)
    assert run.returncode == 5, run.stderr
    assert "Traceback" not in run.stderr and TOKEN not in run.stdout + run.stderr
    last = run.stderr.splitlines()[-1]
    assert last.startswith("error: ") and message in last, last
    assert any(where in path for _, path in fake.calls)  # the refusal was met, not some other failure
    assert fake.repos.get(REPO) is None or fake.repos[REPO].tags == {}
    assert not (tmp_path / "releases").exists()


def test_the_hub_commit_and_the_git_commit_name_each_other(tmp_path: Path, fake: FakeHub,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    out, man, cfg = build(tmp_path, "ds")
    monkeypatch.chdir(ROOT)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    built_from = hub.git_commit()
    assert built_from.removesuffix("+dirty") == head
    record, _ = push(out, man, cfg, tmp_path / "releases")
    repo = fake.repos[REPO]
    commit = repo.tags["v0.1.0"]
    assert repo.descriptions[commit] == f"Built from git commit {built_from}."
    assert repo.tag_messages["v0.1.0"] == f"Dataset version 0.1.0, built from git commit {built_from}"
    assert json.loads(record.read_text())["hub"] == {"repo": REPO, "tag": "v0.1.0", "commit": commit,
                                                      "git_commit": built_from}
    monkeypatch.chdir(tmp_path)  # outside any git repository
    assert hub.git_commit() == "unknown"
