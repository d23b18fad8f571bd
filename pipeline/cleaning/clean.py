"""Cleaning one article (pure): text fixed, metadata lines and furniture out, paragraphs and title found."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import ftfy

from pipeline.cleaning.article import Cleaned, Raw, Removal
from pipeline.cleaning.dates import date_lines, parse_date, url_date
from pipeline.cleaning.rules import Guards, Rules

# Fix mojibake and normalise to NFC, but keep curly quotes, dashes and full-width characters as written.
FTFY = ftfy.TextFixerConfig(uncurl_quotes=False, fix_character_width=False, normalization="NFC", explain=False)
ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")
SPACES = re.compile(r"\s+")
URL_AT_START = re.compile(r"https?://[^\s<>\"'“”]+", re.IGNORECASE)
WORD = re.compile(r"\w+")


def normalise_line(line: str) -> str:
    """Drop zero-width characters, collapse whitespace runs to one space and strip the line."""
    return SPACES.sub(" ", ZERO_WIDTH.sub("", line)).strip()


def fix_text(text: str) -> str:
    """Fix mojibake and line breaks, normalise to NFC; quotes and dashes are kept as they are."""
    return ftfy.fix_text(text, config=FTFY)


def clean(raw: Raw, rules: Rules) -> Cleaned:
    """Clean one article: metadata lines out, furniture out, paragraphs and title found."""
    lines = [normalise_line(line) for line in fix_text(raw.text).split("\n")]
    head = set([k for k, line in enumerate(lines) if line][: rules.guards.head_lines])
    warnings: list[str] = []
    found_date, removed, gone = date_lines(lines, head, rules, warnings)
    _furniture(lines, head, gone, rules)
    removed.extend(gone.values())

    # The article's URL comes from a line the rules took out as furniture (a source link), never from the body.
    url = _clean_field(raw.url)
    if url is None:
        starts = (URL_AT_START.match(r.text) for r in sorted(removed, key=lambda r: r.line))
        url = next((m.group(0).rstrip(".,;:)]") for m in starts if m), None)
    url = safe_url(url, warnings)

    date = None
    if (given := _clean_field(raw.date)) is not None:
        date = parse_date(given, rules)
        if date is None:
            warnings.append(f"unparseable date field {raw.date!r}; using the date found in the text, if any")
    date = date or found_date
    if date is None and url:
        date = url_date(url, rules)

    paragraphs = _paragraphs(lines, gone)
    title = _clean_field(raw.title)
    if title is not None:
        title = normalise_line(fix_text(title))
        if paragraphs and paragraphs[0][2].casefold() == title.casefold():
            removed.append(Removal(paragraphs[0][0] + 1, "title", "metadata", paragraphs[0][2]))
            paragraphs.pop(0)
    elif len(paragraphs) > 1 and paragraphs[0][1] == 1 and _heading_like(paragraphs[0][2], rules.guards):
        first, _, title = paragraphs.pop(0)
        removed.append(Removal(first + 1, "title", "metadata", title))
    removed.sort(key=lambda r: (r.line, r.kind != "metadata"))

    spans, offset = [], 0
    for _, _, para in paragraphs:
        spans.append({"start": offset, "end": offset + len(para)})
        offset += len(para) + 2
    source = _clean_field(raw.source)
    if source is None and url:
        source = (urlsplit(url).hostname or "").removeprefix("www.") or None
    text = "\n\n".join(para for _, _, para in paragraphs)
    return Cleaned(title, text, date, url, source, spans, removed, warnings)


def safe_url(url: str | None, warnings: list[str]) -> str | None:
    """An http(s) URL without user credentials, or None; what was dropped or stripped goes to `warnings`."""
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is what raises for "http://host:x"
    except ValueError as exc:  # "http://[" and "https://[::1": an unclosed IPv6 literal
        warnings.append(f"url dropped: not a valid URL ({exc})")
        return None
    if parts.scheme.lower() not in ("http", "https"):
        warnings.append(f"url dropped: scheme {parts.scheme.lower()[:20]!r} is not http or https")
        return None
    if not parts.hostname:
        warnings.append("url dropped: no host name")
        return None
    if "@" in parts.netloc:  # user or password: never published, never shown in the report
        warnings.append("url: credentials (user:password@) removed")
        return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    return url


def _furniture(lines: list[str], head: set[int], gone: dict[int, Removal], rules: Rules) -> None:
    """Mark the lines that the boilerplate patterns remove in `gone`, within the guards."""
    guards = rules.guards
    # Characters from the start of each line to the end of the article, for the tail guard.
    total = sum(len(line) for k, line in enumerate(lines) if k not in gone) or 1
    from_end, acc = [0] * len(lines), 0
    for k in range(len(lines) - 1, -1, -1):
        acc += 0 if k in gone else len(lines[k])
        from_end[k] = acc

    def in_tail(k: int) -> bool:
        return from_end[k] <= guards.tail_share * total

    for k, line in enumerate(lines):
        if not line or k in gone or len(line) > guards.max_line_chars:
            continue
        for spec, rx in rules.patterns:
            if (spec.where == "head" and k not in head) or (spec.where == "tail" and not in_tail(k)):
                continue
            if not rx.fullmatch(line):
                continue
            if spec.kind == "cut_after" and in_tail(k):
                for j in range(k, len(lines)):
                    if lines[j] and j not in gone:
                        gone[j] = Removal(j + 1, spec.name, "cut_after", lines[j])
                return
            gone[k] = Removal(k + 1, spec.name, "drop_line", line)
            break


def _paragraphs(lines: list[str], gone: dict[int, Removal]) -> list[tuple[int, int, str]]:
    """(first line index, number of lines, paragraph) triples: blank-line separated blocks, or single lines if the text has no blank lines.

    A removed line separates paragraphs like a blank one. Inside a block, hard-wrapped lines are joined with a space.
    """
    present = [k for k, line in enumerate(lines) if line]
    blank_separated = any(not lines[k] for k in range(present[0], present[-1])) if present else False
    paragraphs: list[tuple[int, int, str]] = []
    block: list[int] = []
    for k, line in enumerate([*lines, ""]):
        if line and k not in gone:
            block.append(k)
            if blank_separated:
                continue
        if block:
            paragraphs.append((block[0], len(block), " ".join(lines[j] for j in block)))
            block = []
    return paragraphs


def _heading_like(line: str, guards: Guards) -> bool:
    """A first paragraph is a title when it is short and does not end like a sentence or a clause."""
    return len(line) <= guards.title_max_chars and not line.endswith((".", ",", ";", ":")) and bool(WORD.search(line))


def _clean_field(value: str | None) -> str | None:
    """A metadata field with whitespace normalised; empty means absent."""
    if value is None:
        return None
    value = normalise_line(value)
    return value or None
