"""The README's current-figures table quotes the committed metrics, not an older run."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _row(readme: str, start: str) -> str:
    """The value cell of the README table row whose first cell starts with `start`."""
    (line,) = [line for line in readme.splitlines() if line.startswith(f"| {start}")]
    return line.rstrip(" |").rsplit("|", 1)[1].strip()


def test_current_figures_match_metrics_summary() -> None:
    summary = json.loads((ROOT / "metrics" / "summary.json").read_text())
    readme = (ROOT / "README.md").read_text()
    for kind in ("entity", "stance"):
        expected = " / ".join(f"{summary[f'{kind}_{m}']:.3f}" for m in ("precision", "recall", "f1"))
        assert _row(readme, f"pre-annotation {kind} P / R / F1") == expected
    gold = f"{summary['gold_entities']} / {summary['gold_stances']}"
    assert _row(readme, "gold entities / stances") == gold
    scored = json.loads((ROOT / "metrics" / "preannotation.json").read_text())["gold_articles"]
    assert re.search(rf"on the {scored} (validation/test )?gold articles", readme)
