"""The Label Studio commands of the CLI: push, pull, adjudicate, ls-config and the local server (up, down)."""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.common.jsonl import atomic_writer, write_json
from pipeline.labelstudio import server as ls_server
from pipeline.labelstudio.adjudicate import AdjudicationReport, adjudicate
from pipeline.labelstudio.api import LabelStudioAPI, mask
from pipeline.labelstudio.config import label_config, read_guidelines
from pipeline.labelstudio.lock import PushLock
from pipeline.labelstudio.params import connect, load_config, practice_config
from pipeline.labelstudio.pull import PullReport, pull
from pipeline.labelstudio.push import PushReport, push
from pipeline.labelstudio.reimport import reimport
from pipeline.labelstudio.review import push_review, read_review_tasks
from pipeline.labelstudio.tasks import read_tasks


def push_main(input: Path, guidelines: Path, params: Path, env_file: Path = Path(".env"),
              limit: int | None = None, break_lock: bool = False, remove_duplicates: bool = False,
              report_path: Path | None = None) -> PushReport:
    """Push pre-annotated articles to the Label Studio project named in params, holding the project's push lock."""
    cfg = load_config(params)
    text = read_guidelines(guidelines)
    tasks = read_tasks(input, cfg)
    if limit is not None:
        tasks.limit(limit)
    api = connect(cfg, env_file)
    with PushLock(api, cfg.ls.project_title, cfg.ls.lock_stale_s, break_lock=break_lock) as lock:
        project, report = push(api, tasks, cfg, text, remove_duplicates=remove_duplicates, project=lock.project)
    print(report.line(), file=sys.stderr)
    for aid, old in report.text_changed:
        print(f"push: article {aid}: text changed; old task {old} left as it is", file=sys.stderr)
    if report.not_in_input:
        shown = ", ".join(map(str, report.not_in_input[:10])) + (", ..." if len(report.not_in_input) > 10 else "")
        print(f"push: tasks not in this input (an edited article, or one no longer in the corpus): {shown}",
              file=sys.stderr)
    for line in report.duplicates.details(remove_duplicates):
        print(line, file=sys.stderr)
    print(f"push: project {project['id']} at {api.url}/projects/{project['id']}/data", file=sys.stderr)
    if report_path:
        write_json(report_path, push_report_dict(report, project["id"]))
    return report


def push_report_dict(report: PushReport, project_id: int) -> dict:
    """The push report as JSON: counts, tasks not in the input, articles whose text changed, duplicate tasks."""
    return {
        "project": project_id, "created": report.created, "refreshed": report.refreshed,
        "unchanged": report.unchanged, "kept_annotated": report.kept_annotated,
        "not_in_input": report.not_in_input, "miscounted_predictions": report.miscounted,
        "text_changed": [{"article_id": aid, "old_task": old} for aid, old in report.text_changed],
        **report.duplicates.as_dict(),
    }


def pull_main(out_dir: Path, params: Path, articles: Path | None = None, report_path: Path | None = None,
              env_file: Path = Path(".env")) -> PullReport:
    """Pull a new annotations snapshot."""
    cfg = load_config(params)
    api = connect(cfg, env_file)
    report = pull(api, cfg, out_dir, articles)
    print(report.line(), file=sys.stderr)
    for item in report.stale:
        print(f"pull: stale: task {item['task']} (article {item['article_id']}): {item['reason']}", file=sys.stderr)
    if report_path:
        write_json(report_path, report.as_dict())
    return report


def adjudicate_main(params: Path, report_path: Path | None = None,
                    env_file: Path = Path(".env")) -> AdjudicationReport:
    """Gather the tasks whose annotators disagree in the project's Adjudicate tab."""
    cfg = load_config(params)
    report = adjudicate(connect(cfg, env_file), cfg)
    print(report.line(), file=sys.stderr)
    if report_path:
        write_json(report_path, report.as_dict())
    return report


def config_main(params: Path, output: Path | None = None) -> str:
    """Print (or write) the labeling config generated from params."""
    xml = label_config(load_config(params))
    if output:
        with atomic_writer(output) as out:
            out.write(xml + "\n")
    else:
        print(xml)
    return xml


def up_main(input: Path, guidelines: Path, params: Path, data_dir: Path = Path(".labelstudio"),
            env_file: Path = Path(".env"), annotations: Path = Path("annotations"), port: int | None = None,
            practice: bool = False, review: bool = False) -> None:
    """Bring up the local server, create/update the project, push the tasks, import earlier human work, say how to log in.

    With `practice`, the project is a separate one (title + " (practice)") that gets no earlier human work; with
    `review`, the stance review queue's project is created and filled too."""

    cfg = load_config(params)
    if practice:
        cfg = practice_config(cfg)
    text = read_guidelines(guidelines)
    tasks = read_tasks(input, cfg)
    pairs = read_review_tasks(input, cfg) if review else []
    port = cfg.ls.server.port if port is None else port
    url, creds, started = ls_server.server_main(data_dir, env_file, port, cfg.ls.server.start_timeout_s)
    api = LabelStudioAPI(url, creds.token, timeout_s=cfg.ls.timeout_s, retries=cfg.ls.retries)
    with PushLock(api, cfg.ls.project_title, cfg.ls.lock_stale_s) as lock:
        project, report = push(api, tasks, cfg, text, project=lock.project)
    print(report.line(), file=sys.stderr)
    if annotations.is_dir() and not practice:  # annotators build on the human work of every earlier snapshot, whatever server
        print(reimport(api, project["id"], annotations, cfg.ls.page_size).line(), file=sys.stderr)
    queue = ""
    if review:
        with PushLock(api, cfg.ls.review.project_title, cfg.ls.lock_stale_s) as lock:
            assert lock.project is not None
            review_project, review_report = push_review(api, pairs, cfg, text, lock.project)
        print(review_report.line(), file=sys.stderr)
        queue = f"  the stance review queue: {url}/projects/{review_project['id']}/data\n"
    print(
        f"\nLabel Studio is {'up' if started else 'already running'}: {url}/projects/{project['id']}/data\n"
        f"{queue}"
        f"  log in as {creds.email}; the password is LABEL_STUDIO_PASSWORD in {env_file} "
        f"(`grep LABEL_STUDIO_PASSWORD {env_file}`)\n"
        f"  API token {mask(creds.token)} is LABEL_STUDIO_API_KEY in {env_file}\n"
        f"  more annotators join through {url}{api.get('/api/invite', what='the invite link')['invite_url']}\n"
        f"  stop it with `python -m pipeline label-studio --stop`; data stays in {data_dir}/"
    )


def down_main(data_dir: Path = Path(".labelstudio")) -> None:
    """Stop the local server."""
    print("label-studio: stopped" if ls_server.stop_main(data_dir) else "label-studio: no local server running")
