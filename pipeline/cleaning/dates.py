"""Dates of an article: from a date field, from date lines at the top of the text, or from its URL."""

from __future__ import annotations

import re
from datetime import date as Date
from datetime import datetime

from dateutil import parser as dateutil_parser

from pipeline.cleaning.article import Removal
from pipeline.cleaning.rules import Rules

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
MONTH_WORD = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
WEEKDAY = r"(?:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)(?:day|nesday|rsday|urday)?\.?"
# the words and numbers of a printed date: a line made only of these (and one unknown word) is a date line
DATE_TOKEN = re.compile(
    rf"(?:{MONTH_WORD}|{WEEKDAY}|\d{{1,2}}(?:st|nd|rd|th)?|\d{{4}}|\d{{1,2}}:\d{{2}}(?::\d{{2}})?|[ap]\.?m\.?"
    r"|(?-i:[A-Z]{2,5})|[+-]\d{2}:?\d{2}|at|on|published|updated|posted|last|date|\d{4}-\d{2}-\d{2}(?:T\S+)?)",
    re.IGNORECASE)
LABEL = re.compile(r"^(?:(?:last\s+)?(?:published|updated|posted|date)(?:\s+on)?:?\s*)", re.IGNORECASE)
YEAR = re.compile(r"\b(?:19|20)\d{2}\b")


def date_lines(lines: list[str], head: set[int], rules: Rules,
               warnings: list[str]) -> tuple[str | None, list[Removal], dict[int, Removal]]:
    """Find the date among the head lines and take date lines (or date prefixes) out of `lines`.

    Returns the first valid date, the prefixes cut from lines that stay, and the lines that go (by index);
    a date-like line that cannot be read is taken out too, with a warning appended to `warnings`.
    """
    found: str | None = None
    cut: list[Removal] = []
    gone: dict[int, Removal] = {}
    for k in sorted(head):
        if date_like(lines[k]) and not any(rx.fullmatch(lines[k]) for spec, rx in rules.dates if spec.kind == "line"):
            # a printed date the rules' patterns do not know: the date library reads it, or it is reported
            day = free_date(lines[k])
            found = found or day
            gone[k] = Removal(k + 1, "date_line" if day else "unparsed_date_line", "metadata", lines[k])
            if day is None:
                warnings.append(f"line {k + 1}: date-like line {lines[k]!r:.60} could not be read as a date; "
                                f"taken out of the text")
            continue
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
    """ISO date of a date field: ISO 8601 (date or date-time), else the rules' date formats, else the date library."""
    if m := re.match(r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})(?:$|[T ])", value):
        return _date_of(m)
    for spec, rx in rules.dates:
        if spec.kind != "url" and (m := rx.fullmatch(value) or rx.match(value)) and (day := _date_of(m)):
            return day
    return free_date(value)


def date_like(line: str) -> bool:
    """Whether a line is a printed date and nothing else ("Tuesday 12 March 2024 10:42 GMT"), readable or not."""
    if len(line) > 80 or not YEAR.search(line):
        return False
    words = [w for w in re.split(r"[\s,|/]+", line.strip(" –—-|:,.")) if w]
    unknown = [w for w in words if not DATE_TOKEN.fullmatch(w.strip("(),"))]
    named = re.search(rf"\b(?:{MONTH_WORD}|{WEEKDAY})(?:\W|$)|\d{{4}}-\d{{2}}-\d{{2}}", line, re.IGNORECASE)
    if named:
        return len(unknown) <= 1
    # "12 Mrach 2024": a day, one unknown word where the month should be, a year
    return len(words) == 3 and len(unknown) == 1 and words[1] == unknown[0] and words[0].isdigit()


def free_date(value: str) -> str | None:
    """ISO date of a printed date with year, month and day, read by dateutil; None if any part is missing or wrong."""
    text = LABEL.sub("", value.strip()).strip(" –—-|:,").replace("|", " ")
    days = set()
    for default in (datetime(1901, 1, 1), datetime(1902, 2, 2)):  # a part taken from the default is missing
        try:
            days.add(dateutil_parser.parse(text, default=default, ignoretz=True).date())
        except (ValueError, OverflowError):
            return None
    if len(days) != 1:
        return None
    day = days.pop()
    return day.isoformat() if 1900 <= day.year <= 2100 else None


def url_date(url: str, rules: Rules) -> str | None:
    """ISO date in an article's URL, by the rules' URL date patterns; None if there is none."""
    for spec, rx in rules.dates:
        if spec.kind == "url" and (m := rx.search(url)) and (day := _date_of(m)):
            return day
    return None
