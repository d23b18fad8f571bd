"""The card's provenance: the git commit of the publish code and the repository URL follow the checkout they were built in."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from test_publish import LABELED, write_params

from pipeline import publish as stage
from pipeline.common.errors import ConfigError
from pipeline.common.provenance import file_digest
from pipeline.dataset.source import code_paths, public_url


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=T", "-c", "user.email=t@example.org",
                           "-c", "commit.gpgsign=false", *args], capture_output=True, text=True, check=True).stdout.strip()


def _commit(repo: Path, files: dict[str, str]) -> str:
    """Write `files` into `repo` and commit them; the new commit's id."""
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo, "add", *files)
    _git(repo, "commit", "-q", "-m", "change")
    return _git(repo, "rev-parse", "HEAD")


def _card(folder: Path, repo: Path, labeled: Path = LABELED, repository_url: str | None = None) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    params = write_params(folder)
    if repository_url is not None:
        params.write_text(params.read_text() + f"  repository_url: {repository_url}\n")
    out = folder / "dataset"
    stage.build(labeled, out, stage.load_config(params), metrics=None, releases=folder / "releases", guidelines=None,
                repo=repo)
    return (out / "README.md").read_text()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository holding stand-ins for the publish stage's code files (git only reads their history)."""
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    files = {path + ("/README.md.j2" if not path.endswith(".py") else ""): "v1\n" for path in code_paths()}
    _commit(root, files | {"README.md": "docs\n"})
    return root


def test_the_card_names_the_commit_that_last_changed_the_publish_code(tmp_path: Path, repo: Path) -> None:
    first = _git(repo, "rev-parse", "HEAD")
    card = _card(tmp_path / "a", repo)
    assert f"| code: git commit | `{first}`: the newest commit" in card and "uncommitted" not in card
    assert f"at commit `{first[:12]}` (see *Provenance*)" in card  # Dataset Sources

    _commit(repo, {"README.md": "more docs\n", "dvc.lock": "lock\n"})  # not the publish code: same bytes
    assert _card(tmp_path / "b", repo) == card

    (repo / "pipeline/dataset/card.py").write_text("v2\n")
    dirty = _card(tmp_path / "c", repo)
    assert f"`{first}`" in dirty and "**built with uncommitted changes** to `pipeline/dataset/card.py` |" in dirty

    second = _commit(repo, {"pipeline/dataset/card.py": "v2\n"})
    card = _card(tmp_path / "d", repo)
    assert f"| code: git commit | `{second}`" in card and first not in card and "uncommitted" not in card


def test_the_repository_url_comes_from_params_else_origin_without_credentials(tmp_path: Path, repo: Path) -> None:
    card = _card(tmp_path / "a", repo)
    assert "| code: repository | none: params `publish.repository_url` is null" in card and "url = {" not in card

    _git(repo, "remote", "add", "origin", "https://bot:s3cret@github.com/example/geonews.git")
    card = _card(tmp_path / "b", repo)
    assert "| code: repository | <https://github.com/example/geonews> (from `git remote get-url origin`) |" in card
    assert "  url = {https://github.com/example/geonews}," in card  # the citation
    assert "Hugging Face. https://github.com/example/geonews" in card and "s3cret" not in card

    card = _card(tmp_path / "c", repo, repository_url="https://gitlab.example.org/news/geonews")
    assert "<https://gitlab.example.org/news/geonews> (from params `publish.repository_url`)" in card
    assert "github.com" not in card


def test_outside_a_git_checkout_the_commit_is_not_recorded(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    card = _card(tmp_path / "a", tmp_path / "plain")
    assert "| code: git commit | none: not built in a git checkout |" in card


def test_other_data_changes_the_md5_the_card_claims(tmp_path: Path, repo: Path) -> None:
    records = [json.loads(line) for line in LABELED.read_text().splitlines()]
    records[0]["title"] = "Another title"
    other = tmp_path / "labeled.jsonl"
    other.write_text("".join(json.dumps(r) + "\n" for r in records))
    before, after = _card(tmp_path / "a", repo), _card(tmp_path / "b", repo, labeled=other)
    assert file_digest(LABELED, "md5") in before and file_digest(LABELED, "md5") not in after
    assert file_digest(other, "md5") in after


@pytest.mark.parametrize(("remote", "url"), [
    ("git@github.com:example/geonews.git", "https://github.com/example/geonews"),
    ("ssh://git@github.com:22/example/geonews.git", "https://github.com/example/geonews"),
    ("https://bot:token@github.com/example/geonews.git", "https://github.com/example/geonews"),
    ("http://git.example.org:8080/geonews/", "http://git.example.org:8080/geonews"),
    ("/srv/git/geonews.git", None),  # a local clone's origin is no address for readers
    ("file:///srv/git/geonews.git", None),
    ("https://github.com:port/example/geonews", None),
    ("https://[::1/geonews", None),
])
def test_a_remote_becomes_a_web_url_without_credentials(remote: str, url: str | None) -> None:
    assert public_url(remote) == url


@pytest.mark.parametrize("value", ["https://bot:token@github.com/example/geonews", "git@github.com:example/geonews",
                                   "not a url", "https://github.com:port/x", "https://[::1/x"])
def test_a_bad_repository_url_is_a_config_error_naming_the_key(tmp_path: Path, value: str) -> None:
    params = write_params(tmp_path)
    params.write_text(params.read_text() + f"  repository_url: {json.dumps(value)}\n")
    with pytest.raises(ConfigError, match="repository_url"):
        stage.load_config(params)
