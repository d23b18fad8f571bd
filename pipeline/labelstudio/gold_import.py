"""The human gold round-tripped through a throwaway Label Studio: pushed, annotated as the gold annotator, pulled."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeline.common.contract import LabelSets
from pipeline.common.errors import InputError
from pipeline.common.provenance import sha256_text
from pipeline.common.shards import read_objects
from pipeline.gold import files as gold_module
from pipeline.labelstudio import server as ls_server
from pipeline.labelstudio.api import LabelStudioAPI
from pipeline.labelstudio.config import read_guidelines
from pipeline.labelstudio.index import TaskIndex
from pipeline.labelstudio.params import load_config
from pipeline.labelstudio.pull import PullReport, pull
from pipeline.labelstudio.push import push
from pipeline.labelstudio.tasks import gold_result, read_tasks

GOLD_ANNOTATOR = "gold@annotators.local"


def import_gold(api: LabelStudioAPI, project_id: int, gold_records: Iterable[Mapping[str, Any]],
                page_size: int) -> int:
    """Submit each gold record as the human annotation of its task, by the gold annotator; return the count."""
    users = api.call("listing users", api.sdk.users.with_raw_response.list)
    user = next((u for u in users if u.get("email") == GOLD_ANNOTATOR), None)
    if user is None:
        user = api.call("creating the gold annotator", api.sdk.users.with_raw_response.create, email=GOLD_ANNOTATOR,
                        username="gold", first_name="Gold", password=secrets.token_urlsafe(18))
    tasks = TaskIndex.fetch(api, project_id, page_size)
    n = 0
    for record in gold_records:
        key = (record["id"], sha256_text(record["text"]))
        task = tasks.get(key)
        if task is None:
            raise InputError(f"gold for article {record['id']}: no task with that article and text; push it first")
        api.call(f"submitting the gold annotation of article {record['id']}",
                 api.sdk.annotations.with_raw_response.create, task.task_id, result=gold_result(record),
                 completed_by=user["id"], ground_truth=True)
        n += 1
    return n


def import_gold_main(gold: Path, articles: Path, input: Path, guidelines: Path, out_dir: Path, params: Path) -> PullReport:
    """Round-trip the human gold through a throwaway Label Studio server into a new snapshot in `out_dir`."""
    cfg = load_config(params)
    text = read_guidelines(guidelines)
    labels = LabelSets(entity_labels=cfg.entity_labels, stance_labels=cfg.stance_labels)
    records = list(gold_module.load_gold(gold, read_objects(articles), labels))
    tasks = read_tasks(input, cfg)
    with ls_server.throwaway("ls-import-gold", cfg.ls.server.start_timeout_s) as (url, token):
        api = LabelStudioAPI(url, token, timeout_s=cfg.ls.timeout_s, retries=cfg.ls.retries)
        project, _ = push(api, tasks, cfg, text, progress=False)
        n = import_gold(api, project["id"], records, cfg.ls.page_size)
        report = pull(api, cfg, out_dir, articles)
    print(f"ls-import-gold: {n} gold annotation(s) -> {report.line()}", file=sys.stderr)
    return report

