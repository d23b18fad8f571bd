"""In a real browser: the pushed predictions are drawn (Label Studio silently drops a malformed prediction).

Headless Debian Chromium driven by Playwright; the screenshot is kept in test-artifacts/.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.common.errors import BadRecords
from pipeline.common.jsonl import read_jsonl
from pipeline.labelstudio.api import LabelStudioAPI
from pipeline.labelstudio.params import load_config
from pipeline.labelstudio.push import push
from pipeline.labelstudio.tasks import build_tasks

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path("test-artifacts")


@pytest.fixture(scope="module")
def pushed(label_studio_server, seed_preannotated, tmp_path_factory):
    """The seed articles, pre-annotated by the pipeline, pushed to a project of their own."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["labelstudio"]["project_title"] = "Browser check"
    path = tmp_path_factory.mktemp("browser") / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    cfg = load_config(path)
    bad = BadRecords("push", 0.0, quiet=True)
    tasks = build_tasks(read_jsonl(seed_preannotated, bad), cfg, seed_preannotated, bad)
    api = LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=30)
    project, _ = push(api, tasks, cfg, (ROOT / "resources" / "guidelines.md").read_text(), progress=False)
    stored = list(api.pages("/api/tasks", what="tasks", page_size=100, params={"project": project["id"], "fields": "all"}))
    return project, stored


def test_predictions_are_rendered(label_studio_server, pushed):
    from playwright.sync_api import sync_playwright

    project, stored = pushed
    # the article with the most predicted stances, and a byline
    task = max((t for t in stored if t["data"]["byline"]),
               key=lambda t: sum(r["type"] == "relation" for r in t["predictions"][0]["result"]))
    result = task["predictions"][0]["result"]
    regions = [r for r in result if r["type"] == "labels"]
    relations = [r for r in result if r["type"] == "relation"]
    assert regions and relations
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            _open_task(page, label_studio_server, project["id"], task["id"])
            for region in regions:  # every predicted span is drawn, over exactly its text
                spans = page.locator(f"[class*='htx-highlight-{region['id']}-']")  # class: htx-highlight-<id>-<n>
                spans.first.wait_for(timeout=60_000)
                assert "".join(spans.all_inner_texts()) == region["value"]["text"]
            overlay = page.locator(".relations-overlay text")
            drawn = [overlay.nth(i).text_content() or "" for i in range(overlay.count())]  # SVG: no innerText
            assert sorted(drawn) == sorted(r["labels"][0] for r in relations)
            # Label Studio 1.23 draws every stance chip alike, whatever its <Relation background>, and nothing in the
            # overlay but the chip's text names the label: no CSS (<Style>) can colour by polarity (docs/annotating.md)
            chips = page.locator(".relations-overlay g:has(> text) > rect")
            fills = {chips.nth(i).evaluate("e => getComputedStyle(e).fill") for i in range(chips.count())}
            assert chips.count() == len(relations) and fills == {"rgb(170, 0, 170)"}  # #a0a, built in
            arrows = page.locator(".relations-overlay path[stroke-linecap='round']")
            assert arrows.count() == len(relations)
            assert len({arrows.nth(i).evaluate("e => getComputedStyle(e).stroke") for i in range(arrows.count())}) == 1
            values = page.locator(".relations-overlay").first.evaluate(
                "svg => [...svg.querySelectorAll('*')].flatMap(e => [...e.attributes].map(a => a.value))")
            assert not [v for v in values for r in relations if r["labels"][0] in v]
            if task["data"]["title"]:
                assert page.get_by_text(task["data"]["title"], exact=True).is_visible()
            assert page.get_by_text(task["data"]["byline"], exact=True).is_visible()
            page.screenshot(path=str(ARTIFACTS / "labelstudio-task.png"))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "labelstudio-task-failure.png"))
            raise
        finally:
            browser.close()


def _open_task(page, server, project_id: int, task_id: int) -> None:
    """Log in (if needed) and open one task in the labelling view, predictions drawn."""
    if "/user/login" in page.url or page.url == "about:blank":
        page.goto(f"{server.url}/user/login/")
        page.fill("input[name=email]", server.email)
        page.fill("input[name=password]", server.password)
        page.click("button[type=submit]")
        page.wait_for_url(lambda u: "/user/login" not in u, timeout=60_000)
    page.goto(f"{server.url}/projects/{project_id}/data?tab=0&task={task_id}")
    page.locator(".relations-overlay text").first.wait_for(timeout=60_000)


def test_relations_single_choice_readable_and_actor_on_regions(label_studio_server, pushed):
    """One label per relation; the relations list names its ends; each region shows its actor and its stances with
    polarity and reason; edits survive a reload."""
    from playwright.sync_api import sync_playwright

    project, stored = pushed
    task = max(stored, key=lambda t: sum(r["type"] == "relation" for r in t["predictions"][0]["result"]))
    result = task["predictions"][0]["result"]
    regions = [r for r in result if r["type"] == "labels"]
    relations = [r for r in result if r["type"] == "relation"]
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            _open_task(page, label_studio_server, project["id"], task["id"])
            # the actor link of a region is shown in its details (region meta)
            first = regions[0]
            page.locator(f"[class*='htx-highlight-{first['id']}-']").first.click()
            page.get_by_text(first["meta"]["text"][0].splitlines()[0]).first.wait_for(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "labelstudio-region-actor.png"))
            page.keyboard.press("Escape")
            # a stance's holder names its target, polarity and reason in its details, and the target its holder
            holder = next(r for r in regions if r["id"] == relations[0]["from_id"])
            target = next(r for r in regions if r["id"] == relations[0]["to_id"])
            label = relations[0]["labels"][0].upper()
            lines = holder["meta"]["text"][0].splitlines()
            told = next(t for t in lines if t.startswith(f"→ {label} {target['value']['text']} ("))
            page.locator(f"[class*='htx-highlight-{holder['id']}-']").first.click()
            shown = page.locator(".lsf-region-meta, [class*='region-meta'], [class*='meta']").filter(has_text=told).first
            shown.wait_for(timeout=30_000)
            assert lines[0] in shown.inner_text()
            page.screenshot(path=str(ARTIFACTS / "labelstudio-stance-reason.png"))
            page.keyboard.press("Escape")

            page.locator(".lsf-panel-tabs__tab:visible", has_text="Relations").first.click()
            items = page.locator(".lsf-relations__item")
            items.first.wait_for(timeout=30_000)
            assert items.count() == len(relations)
            # each end of a relation is named by its region's index and label (what Label Studio 1.23 shows)
            index = {r["id"]: i + 1 for i, r in enumerate(regions)}
            label = {r["id"]: r["value"]["labels"][0] for r in regions}
            shown = sorted(tuple(items.nth(k).locator(".lsf-detailed-region__head").all_inner_texts())
                           for k in range(items.count()))
            expected = sorted((f"{index[r['from_id']]}\n{label[r['from_id']]}", f"{index[r['to_id']]}\n{label[r['to_id']]}")
                              for r in relations)
            assert [tuple(s.replace(" ", "\n").strip() for s in pair) for pair in shown] == expected

            # one label per relation: picking "favor" replaces "against", it is not added to it
            item = items.first
            item.hover()
            item.get_by_role("button", name="Show Relation Labels").click()
            trigger = item.locator("[data-testid^='select-trigger']")
            before = trigger.inner_text()
            other = next(v for v in ("against", "favor") if v != before)
            trigger.click()
            page.locator("[role=option]:visible", has_text=other).first.click()
            page.keyboard.press("Escape")
            assert trigger.inner_text() == other
            assert item.locator("select").first.get_attribute("multiple") is None
            page.screenshot(path=str(ARTIFACTS / "labelstudio-relation-single-label.png"))

            # submit, reopen: the relation keeps its new single label
            page.get_by_role("button", name="Submit").click()
            page.wait_for_timeout(2_000)
            api = LabelStudioAPI(label_studio_server.url, label_studio_server.token, timeout_s=30)
            [saved] = api.get(f"/api/tasks/{task['id']}/annotations", what="annotations")
            labels = sorted(r["labels"] for r in saved["result"] if r["type"] == "relation")
            assert [other] in labels and all(len(x) == 1 for x in labels)
            _open_task(page, label_studio_server, project["id"], task["id"])
            drawn = page.locator(".relations-overlay text")
            assert sorted(drawn.nth(i).text_content() or "" for i in range(drawn.count())) == sorted(x[0] for x in labels)
            page.screenshot(path=str(ARTIFACTS / "labelstudio-relation-reopened.png"))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "labelstudio-relations-failure.png"))
            raise
        finally:
            browser.close()
