"""One article before cleaning (as read from the corpus) and after it, with what was removed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Raw:
    """One article as read from the corpus, before cleaning."""

    source_file: str  # relative to the corpus, with ":LINE" for JSONL/CSV records
    where: str  # the path as the user gave it, for messages
    text: str
    title: str | None = None
    date: str | None = None
    url: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class Removal:
    """A line (or the part of one) taken out of the text, and the rule that took it."""

    line: int  # 1-based line number within the text (for a .txt file: within the file)
    pattern: str
    kind: str  # drop_line | cut_after | metadata
    text: str


@dataclass(frozen=True)
class Cleaned:
    """The cleaned text of one article with its metadata and everything removed from it."""

    title: str | None
    text: str
    date: str | None
    url: str | None
    source: str | None
    paragraphs: list[dict[str, int]]
    removed: list[Removal]
    warnings: list[str]
    html: bool = False  # the text was extracted from an HTML document
