"""Duplicate detection over (task id, key, annotated) entries: what is kept, what may go, what a human decides."""

from __future__ import annotations

from pipeline.labelstudio.duplicates import DuplicateReport, find_duplicates, has_human_work
from pipeline.labelstudio.push import PushReport

A, B, C, D = ("a", "h1"), ("b", "h2"), ("c", "h3"), ("a", "h9")  # D: article a with another text: not a duplicate


def test_only_keys_with_several_tasks_are_duplicates_and_ids_are_ordered_oldest_first():
    entries = [(9, A, False), (3, B, False), (4, A, False), (7, D, False), (5, A, False), (8, C, False)]
    groups = find_duplicates(entries)
    assert [(g.key, g.tasks) for g in groups] == [(A, (4, 5, 9))]
    assert groups[0].keep == (4,) and groups[0].removable == (5, 9) and not groups[0].needs_human


def test_the_annotated_task_is_kept_even_when_it_is_not_the_oldest():
    (group,) = find_duplicates([(1, A, False), (2, A, True), (3, A, False)])
    assert group.keep == (2,) and group.removable == (1, 3) and not group.needs_human


def test_several_annotated_tasks_of_one_key_are_all_kept_for_a_human_decision():
    (group,) = find_duplicates([(1, A, True), (2, A, False), (3, A, True)])
    assert group.keep == (1, 3) and group.removable == (2,) and group.needs_human


def test_an_iterator_of_entries_is_enough():
    groups = find_duplicates((i, B if i % 2 else C, False) for i in range(1, 7))
    assert [(g.key, g.tasks) for g in groups] == [(B, (1, 3, 5)), (C, (2, 4, 6))]


def test_report_counts_and_lines():
    report = DuplicateReport(find_duplicates([(1, A, False), (2, A, True), (3, A, False), (4, C, True), (5, C, True)]))
    assert report.extra == 3
    assert report.line() == ("3 duplicate task(s) of 2 article(s), 0 removed, 3 left "
                             "(1 article(s) with annotations on several tasks: a human decides)")
    before = report.details(removing=False)
    assert before[0] == ("push: duplicate: article a (text h1): tasks 1, 2, 3; "
                         "2 without annotations; --remove-duplicates deletes them")
    assert "tasks 4, 5 all have annotations: a human decides" in before[1]
    report.removed += [1, 3]
    assert report.details(removing=True)[0].endswith("kept 2 (annotated)")
    assert report.as_dict()["duplicated_articles"][1] == {
        "article_id": "c", "text_hash": "h3", "tasks": [4, 5], "annotated": [4, 5], "keep": [4, 5], "needs_human": True}
    assert "2 removed, 1 left" in report.line()


def test_no_duplicates_adds_nothing_to_the_push_summary():
    assert DuplicateReport().line() == "" and not find_duplicates([])
    assert "duplicate" not in PushReport().line()
    assert PushReport(duplicates=DuplicateReport(find_duplicates([(1, A, False), (2, A, False)]))).line().endswith(
        "; 1 duplicate task(s) of 1 article(s), 0 removed, 1 left (0 article(s) with annotations on several tasks: "
        "a human decides)")


def test_human_work_is_a_submitted_or_skipped_annotation_or_a_draft():
    assert not has_human_work({"id": 1, "total_annotations": 0, "cancelled_annotations": 0, "drafts": []})
    assert has_human_work({"total_annotations": 1})
    assert has_human_work({"cancelled_annotations": 1})
    assert has_human_work({"drafts": [{"id": 3, "result": []}]})
