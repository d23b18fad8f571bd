"""10,000 tasks through push and pull on the real server: paging, batching, streaming, idempotency at scale."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.common.jsonl import read_jsonl
from pipeline.common.provenance import sha256_text
from pipeline.labelstudio.api import LabelStudioAPI
from pipeline.labelstudio.params import load_config
from pipeline.labelstudio.pull import pull
from pipeline.labelstudio.push import push
from pipeline.labelstudio.tasks import to_task

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GOLDEN = Path(__file__).parent / "golden"
N = 10_000


def _record(i: int) -> dict:
    text = f"Article {i}: Russia met NATO in Geneva."
    start = text.index("Russia")
    return {
        "id": sha256_text(text)[:16], "title": f"Synthetic {i}", "text": text, "date": "2022-01-10",
        "url": None, "source": "synthetic",
        "entities": [{"start": start, "end": start + 6, "label": "GPE", "text": "Russia", "score": (i % 97) / 100,
                      "actor": None}],
        "stances": [],
        "provenance": {"model": "m", "model_version": "1", "rules_version": "r", "code_revision": "c"},
    }


def test_ten_thousand_tasks_push_and_pull(label_studio_server, tmp_path):
    params = yaml.safe_load((GOLDEN / "params.yaml").read_text())
    params["labelstudio"].update(project_title="Scale check", import_batch_size=500, page_size=1000)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    cfg = load_config(path)
    api = LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=300, retries=2)
    tasks = [to_task(_record(i), cfg) for i in range(N)]
    _, report = push(api, tasks[: N // 2], cfg, "guidelines", progress=False)
    assert report.created == N // 2
    _, report = push(api, tasks, cfg, "guidelines", progress=False)
    assert (report.created, report.unchanged) == (N - N // 2, N // 2)

    pulled = pull(api, cfg, tmp_path / "annotations")
    ids = [t["data"]["article_id"] for _, t in read_jsonl(Path(pulled.snapshot))]
    assert pulled.tasks == len(ids) == len(set(ids)) == N
    assert set(ids) == {t["data"]["article_id"] for t in tasks}
