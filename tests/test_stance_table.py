"""compare-stances: one table of every system on the evaluation sets present, from the real pre-annotator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "re3d"


def test_compare_stances_scores_rules_and_a_model_on_the_sets_present(tmp_path: Path) -> None:
    out = tmp_path / "table.json"
    missing = str(tmp_path / "absent")
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "compare-stances", "--re3d", str(FIXTURE), "--gold", missing,
         "--articles", missing, "--seesaw", missing, "--model", "resources/stance_model/seesaw.json",
         "--output", str(out)],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    table = json.loads(out.read_text())
    assert set(table) == {"rules", "model seesaw.json"}
    for row in table.values():
        assert set(row) == {"re3d heldout"}  # the absent sets are left out, not scored as zero
        scores = row["re3d heldout"]
        assert scores["gold"] > 0 and 0 <= scores["correct"] <= scores["predicted"]
        assert 0.0 <= scores["p"] <= 1.0 and 0.0 <= scores["f1"] <= 1.0
    lines = done.stdout.splitlines()
    assert lines[0].startswith("| system | re3d heldout P / R / F1 |")
    assert any(line.startswith("| rules | ") for line in lines)
