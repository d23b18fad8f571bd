"""No text of the evaluation data (SEESAW, re3d) is in the repository: only weights and figures learned from it.

Runs where ../shared/eval exists (the data is not distributed with the project); elsewhere there is nothing to leak.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EVAL = Path(os.environ.get("EVAL_DIR", ROOT.parent / "shared" / "eval"))
WINDOW = 10  # words: a run this long shared with the evaluation text is a copy, not a common phrase


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _eval_texts() -> Iterator[str]:
    for path in sorted((EVAL / "seesaw" / "articles").glob("*.json")):
        yield " ".join(s["text"] for s in json.loads(path.read_text(encoding="utf-8"))["text"])
    for path in sorted((EVAL / "re3d").glob("*/documents.json")):
        for line in path.read_text(encoding="utf-8-sig").splitlines():
            if line.strip():
                yield json.loads(line)["text"]


def shared_runs(repo_texts: dict[str, str], eval_texts: Iterator[str]) -> dict[str, str]:
    """Repository files holding a WINDOW-word run of some evaluation text, with the run."""
    runs: dict[tuple[str, ...], None] = {}
    for text in eval_texts:
        words = _words(text)
        runs |= dict.fromkeys(tuple(words[i:i + WINDOW]) for i in range(len(words) - WINDOW + 1))
    found = {}
    for name, text in repo_texts.items():
        words = _words(text)
        hit = next((g for i in range(len(words) - WINDOW + 1) if (g := tuple(words[i:i + WINDOW])) in runs), None)
        if hit:
            found[name] = " ".join(hit)
    return found


def test_the_check_finds_a_copied_run() -> None:
    copied = "Intro. The envoys of Freedonia and Sylvania met in Geneva on Tuesday to sign the pact. End."
    assert shared_runs({"f.md": copied}, iter(["Long ago the envoys of Freedonia and Sylvania met in Geneva on Tuesday to sign"]))
    assert not shared_runs({"f.md": "the envoys met in Geneva"}, iter(["the envoys of Freedonia met in Geneva"]))


@pytest.mark.skipif(not (EVAL / "re3d").is_dir() or not (EVAL / "seesaw").is_dir(),
                    reason=f"evaluation data not found at {EVAL} (set EVAL_DIR)")
def test_no_evaluation_text_in_the_repository() -> None:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    texts = {}
    for name in files:
        path = ROOT / name
        if path.suffix in {".parquet", ".png", ".lock"} or not path.is_file() or path.stat().st_size > 5_000_000:
            continue
        try:
            texts[name] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
    assert not shared_runs(texts, _eval_texts())
