"""Cleaning one article (pure): text fixed, metadata lines and furniture out, paragraphs and title found."""

from __future__ import annotations

import re
from dataclasses import replace
from urllib.parse import urlsplit

import ftfy
import lxml.etree
import lxml.html

from pipeline.cleaning.article import Cleaned, Raw, Removal
from pipeline.cleaning.dates import date_lines, parse_date, url_date
from pipeline.cleaning.rules import Guards, Rules

# Fix mojibake and normalise to NFC, but keep curly quotes, dashes and full-width characters as written.
FTFY = ftfy.TextFixerConfig(uncurl_quotes=False, fix_character_width=False, normalization="NFC", explain=False)
ZERO_WIDTH = re.compile("[\u200b\u2060\ufeff]")
# Joiners shape emoji sequences and Persian or Indic spelling inside a word; beside a space or a line end they are noise.
LOOSE_JOINERS = re.compile(r"(?<!\S)[\u200c\u200d]+|[\u200c\u200d]+(?!\S)")
# Line and paragraph separators that str.split("\n") misses and ftfy deletes or turns into "…" (\v is Word's line
# break): each ends a line, so words on either side are never fused. \x85 after a UTF-8 lead byte read as
# Latin-1 ("Ã\x85" is "Å") is mojibake, left for ftfy.
LINE_BREAKS = re.compile("\r\n|[\r\v\f\x1c\x1d\x1e\u2028]|(?<![\u00c2-\u00f4])\u0085")
PARAGRAPH_SEPARATOR = "\u2029"
# Bidirectional controls: stripped from metadata; in the body only the overrides go (they show characters in
# an order other than the stored one), marks, embeddings and isolates stay as the writer put them.
BIDI = re.compile("[\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069]")
BIDI_OVERRIDES = re.compile("[\u202d\u202e]")
HTML_START = re.compile(r"\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)[\s>]",
                        re.IGNORECASE | re.DOTALL)
HTML_DROPPED = ("script", "style", "noscript", "template", "head", "nav", "form", "iframe", "svg", "button")
HTML_BLOCKS = frozenset({"address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "figcaption", "figure",
                         "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "ol", "p", "pre",
                         "section", "table", "tr", "ul"})
SPACES = re.compile(r"\s+")
URL_AT_START = re.compile(r"https?://[^\s<>\"'“”]+", re.IGNORECASE)
WORD = re.compile(r"\w+")


def normalise_line(line: str) -> str:
    """Drop zero-width spaces and loose joiners, collapse whitespace runs to one space and strip the line."""
    return LOOSE_JOINERS.sub("", SPACES.sub(" ", ZERO_WIDTH.sub("", line)).strip())


def fix_text(text: str) -> str:
    """Line separators to newlines, mojibake fixed, NFC; quotes and dashes are kept as they are."""
    text = LINE_BREAKS.sub("\n", text).replace(PARAGRAPH_SEPARATOR, "\n\n")
    return ftfy.fix_text(text, config=FTFY)


def metadata(value: str) -> str:
    """A metadata field's text (title, date, source): fixed like the body, on one line, bidi controls stripped."""
    return normalise_line(BIDI.sub("", fix_text(value)))


def is_html(text: str) -> bool:
    """True when `text` is an HTML document (a doctype, <html>, <head> or <body> first), not an article's text."""
    return HTML_START.match(text) is not None


def html_text(document: str) -> tuple[str, str | None]:
    """(text, title) of an HTML document: scripts, styles and navigation dropped, one paragraph per block."""
    try:
        root = lxml.html.document_fromstring(document)
    except (lxml.etree.ParserError, ValueError):  # nothing to parse, or an encoding declaration in a str
        root = lxml.html.document_fromstring(document.encode("utf-8"))
    title = root.findtext(".//title")
    for element in list(root.iter(*HTML_DROPPED)):
        element.drop_tree()
    for element in root.iter():
        if element.tag == "br":
            element.tail = "\n" + (element.tail or "")
        elif element.tag in HTML_BLOCKS:
            element.text = "\n\n" + (element.text or "")
            element.tail = "\n\n" + (element.tail or "")
    return root.text_content(), title


def clean(raw: Raw, rules: Rules) -> Cleaned:
    """Clean one article: metadata lines out, furniture out, paragraphs and title found."""
    body, html = raw.text, is_html(raw.text)
    if html:
        body, html_title = html_text(raw.text)
        raw = replace(raw, title=raw.title if _clean_field(raw.title) else html_title)
    lines = [normalise_line(line) for line in BIDI_OVERRIDES.sub("", fix_text(body)).split("\n")]
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
        given = metadata(given)
        date = parse_date(given, rules)
        if date is None:
            warnings.append(f"unparseable date field {raw.date!r}; using the date found in the text, if any")
    date = date or found_date
    if date is None and url:
        date = url_date(url, rules)

    paragraphs = _paragraphs(lines, gone)
    title = _clean_field(raw.title)
    if title is not None:
        title = metadata(title)
        if paragraphs and paragraphs[0][2].casefold() == title.casefold():
            removed.append(Removal(paragraphs[0][0] + 1, "title", "metadata", paragraphs[0][2]))
            paragraphs.pop(0)
    elif len(paragraphs) > 1 and paragraphs[0][1] == 1 and _heading_like(paragraphs[0][2], rules.guards):
        first, _, title = paragraphs.pop(0)
        removed.append(Removal(first + 1, "title", "metadata", title))
        title = metadata(title) or None
    removed.sort(key=lambda r: (r.line, r.kind != "metadata"))

    spans, offset = [], 0
    for _, _, para in paragraphs:
        spans.append({"start": offset, "end": offset + len(para)})
        offset += len(para) + 2
    source = _clean_field(raw.source)
    if source is not None:
        source = metadata(source) or None
    if source is None and url:
        source = (urlsplit(url).hostname or "").removeprefix("www.") or None
    text = "\n\n".join(para for _, _, para in paragraphs)
    return Cleaned(title, text, date, url, source, spans, removed, warnings, html=html)


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
