"""Dates of an article: from a date field, from date lines at the top of the text, or from its URL."""

from __future__ import annotations

import re
from datetime import date as Date

from pipeline.cleaning.article import Removal
from pipeline.cleaning.rules import Rules

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def date_lines(lines: list[str], head: set[int], rules: Rules) -> tuple[str | None, list[Removal], dict[int, Removal]]:
    """Find the date among the head lines and take date lines (or date prefixes) out of `lines`.

    Returns the first valid date, the prefixes cut from lines that stay, and the lines that go (by index).
    """
    found: str | None = None
    cut: list[Removal] = []
    gone: dict[int, Removal] = {}
    for k in sorted(head):
        for spec, rx in rules.dates:
            if spec.kind == "url":
                continue
            m = rx.fullmatch(lines[k]) if spec.kind == "line" else rx.match(lines[k])
            if not m or (day := _date_of(m)) is None:
                continue
            found = found or day
            if spec.kind == "line":
                gone[k] = Removal(k + 1, spec.name, "metadata", lines[k])
                break
            prefix, lines[k] = lines[k][: m.end()].strip(), lines[k][m.end() :].lstrip(" –—-|:,")
            if lines[k]:
                cut.append(Removal(k + 1, spec.name, "metadata", prefix))
            else:
                gone[k] = Removal(k + 1, spec.name, "metadata", prefix)
            break
    return found, cut, gone


def _date_of(m: re.Match[str]) -> str | None:
    """ISO date from a match with year, month (number or English name) and day groups; None if not a real date."""
    month = m.group("month")
    number = int(month) if month.isdigit() else MONTHS.index(month[:3].lower()) + 1
    try:
        day = Date(int(m.group("year")), number, int(m.group("day")))
    except ValueError:
        return None
    return day.isoformat() if 1900 <= day.year <= 2100 else None


def parse_date(value: str, rules: Rules) -> str | None:
    """ISO date of a date field: ISO 8601 (date or date-time), else any of the rules' date formats."""
    if m := re.match(r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})(?:$|[T ])", value):
        return _date_of(m)
    for spec, rx in rules.dates:
        if spec.kind != "url" and (m := rx.fullmatch(value) or rx.match(value)) and (day := _date_of(m)):
            return day
    return None


def url_date(url: str, rules: Rules) -> str | None:
    """ISO date in an article's URL, by the rules' URL date patterns; None if there is none."""
    for spec, rx in rules.dates:
        if spec.kind == "url" and (m := rx.search(url)) and (day := _date_of(m)):
            return day
    return None
