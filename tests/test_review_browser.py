"""In a real browser: the stance review queue serves the least certain pair first with the model's label ticked,
a hotkey answers it, and the effort per stance (seconds, clicks, keys) beside correcting one in the article view.

Headless Debian Chromium driven by Playwright; screenshots and test-artifacts/review-effort.json are kept.
The seconds are the scripted browser's (the interface's own latency, no reading time); clicks and keys are what
an annotator has to do.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from pipeline.labelstudio.api import LabelStudioAPI
from pipeline.labelstudio.commands import push_main
from pipeline.labelstudio.review import push_review_main

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.usefixtures("no_env_server")]

ROOT = Path(__file__).resolve().parent.parent
PREANNOTATED = ROOT / "tests" / "golden" / "preannotated.jsonl"
GUIDELINES = ROOT / "resources" / "guidelines.md"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path("test-artifacts")


@pytest.fixture(scope="module")
def projects(label_studio_server, env_file, tmp_path_factory):
    """The golden articles pushed as an article project and as a review queue of their two proposed pairs."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["labelstudio"]["project_title"] = "Effort articles"
    params["labelstudio"]["review"]["project_title"] = "Effort review queue"
    path = tmp_path_factory.mktemp("effort") / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    push_main(PREANNOTATED, GUIDELINES, path, env_file)
    push_review_main(PREANNOTATED, GUIDELINES, path, env_file)
    api = LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=30)
    found = {p["title"]: p for p in api.projects("Effort")}
    return api, found["Effort articles"], found["Effort review queue"]


def _login(page, server) -> None:
    page.goto(f"{server.url}/user/login/")
    page.fill("input[name=email]", server.email)
    page.fill("input[name=password]", server.password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda u: "/user/login" not in u, timeout=60_000)


def _saved(api: LabelStudioAPI, task_id: int, timeout_s: float = 30.0) -> list[dict]:
    """The task's annotations once there is one (the submit reached the server)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := api.get(f"/api/tasks/{task_id}/annotations", what="annotations"):
            return found
        time.sleep(0.05)
    raise AssertionError(f"task {task_id}: no annotation saved within {timeout_s} s")


def _tasks(api: LabelStudioAPI, project_id: int) -> list[dict]:
    return sorted(api.pages("/api/tasks", what="tasks", page_size=100, params={"project": project_id, "fields": "all"}),
                  key=lambda t: t["id"])


def test_queue_hotkey_answers_and_effort_against_the_article_view(label_studio_server, projects):
    from playwright.sync_api import sync_playwright

    api, articles, queue = projects
    pairs = _tasks(api, queue["id"])
    article = next(t for t in _tasks(api, articles["id"]) if t["data"]["article_id"] == "32f6ef891b72e343")
    ARTIFACTS.mkdir(exist_ok=True)
    effort: dict[str, dict] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            _login(page, label_studio_server)
            # the queue: "Label All Tasks" serves the pairs one after another, least certain first
            page.goto(f"{label_studio_server.url}/projects/{queue['id']}/data?labeling=1")
            seconds, clicks, keys = 0.0, 0, 0
            for n, task in enumerate(pairs):
                question = page.get_by_text(task["data"]["question"], exact=True)
                question.wait_for(timeout=60_000)
                checked = page.locator("input[type=radio]:checked")
                checked.first.wait_for(state="attached", timeout=30_000)
                # the model's label is preselected
                picked = page.locator(".ant-radio-wrapper-checked, [class*='choice'][class*='checked']")
                assert task["data"]["proposed"] in picked.first.inner_text()
                if n == 0:
                    page.get_by_role("button", name="Close modal").click()  # the guidelines open with the stream
                    page.screenshot(path=str(ARTIFACTS / "review-queue-task.png"))
                start = time.monotonic()
                page.keyboard.press("n")  # `none`, by its hotkey
                keys += 1
                page.locator("button[aria-label='Submit current annotation']").click()
                clicks += 1
                [saved] = _saved(api, task["id"])
                seconds += time.monotonic() - start
                assert saved["result"][0]["value"] == {"choices": ["none"]}
            effort["review_queue"] = {"stances": len(pairs), "seconds_per_stance": round(seconds / len(pairs), 2),
                                      "clicks_per_stance": clicks / len(pairs), "keys_per_stance": keys / len(pairs)}
            assert pairs[0]["predictions"][0]["score"] < pairs[1]["predictions"][0]["score"]

            # the article view: change the one predicted stance's label in the Relations panel and submit
            page.goto(f"{label_studio_server.url}/projects/{articles['id']}/data?tab=0&task={article['id']}")
            page.locator(".relations-overlay text").first.wait_for(timeout=60_000)
            start, clicks = time.monotonic(), 0
            page.locator(".lsf-panel-tabs__tab:visible", has_text="Relations").first.click()
            clicks += 1
            item = page.locator(".lsf-relations__item").first
            item.hover()
            item.get_by_role("button", name="Show Relation Labels").click()
            trigger = item.locator("[data-testid^='select-trigger']")
            trigger.click()
            page.locator("[role=option]:visible", has_text="favor").first.click()
            page.keyboard.press("Escape")
            page.get_by_role("button", name="Submit").click()
            clicks += 4
            [saved] = _saved(api, article["id"])
            effort["article_view"] = {"stances": 1, "seconds_per_stance": round(time.monotonic() - start, 2),
                                      "clicks_per_stance": float(clicks), "keys_per_stance": 1.0}
            assert [r["labels"] for r in saved["result"] if r["type"] == "relation"] == [["favor"]]
            page.screenshot(path=str(ARTIFACTS / "review-article-view.png"))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "review-queue-failure.png"))
            (ARTIFACTS / "review-queue-failure.html").write_text(page.content())
            raise
        finally:
            browser.close()
    (ARTIFACTS / "review-effort.json").write_text(json.dumps(effort, indent=2) + "\n")
    print(json.dumps(effort))
    assert effort["review_queue"]["clicks_per_stance"] < effort["article_view"]["clicks_per_stance"]
