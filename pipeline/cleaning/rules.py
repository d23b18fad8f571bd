"""The boilerplate and date rules file (resources/boilerplate.yaml): its layout, its guards and its compiled form."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.common.config import from_mapping, read_yaml
from pipeline.common.errors import ConfigError


@dataclass(frozen=True)
class Guards:
    """Limits that keep boilerplate removal away from the article body."""

    head_lines: int
    tail_share: float
    max_line_chars: int
    title_max_chars: int


@dataclass(frozen=True)
class PatternSpec:
    """One furniture pattern, matched against whole lines."""

    name: str
    kind: Literal["drop_line", "cut_after"]
    regex: str
    where: Literal["anywhere", "head", "tail"] = "anywhere"
    case_sensitive: bool = False


@dataclass(frozen=True)
class DateSpec:
    """One date pattern with named groups year, month and day."""

    name: str
    kind: Literal["prefix", "line", "url"]
    regex: str


@dataclass(frozen=True)
class RulesFile:
    """The layout of resources/boilerplate.yaml."""

    version: str
    guards: Guards
    dates: tuple[DateSpec, ...]
    patterns: tuple[PatternSpec, ...]


@dataclass(frozen=True)
class Rules:
    """Compiled boilerplate and date rules."""

    version: str
    guards: Guards
    dates: tuple[tuple[DateSpec, re.Pattern[str]], ...]
    patterns: tuple[tuple[PatternSpec, re.Pattern[str]], ...]


def load_rules(path: Path) -> Rules:
    """Read and compile the boilerplate/date rules file; any problem is a ConfigError naming the rule."""
    spec = from_mapping(RulesFile, read_yaml(path, "patterns file"), str(path))
    if not 0 < spec.guards.tail_share < 1:
        raise ConfigError(f"{path}:guards.tail_share must be in (0, 1)")
    names = [p.name for p in spec.patterns] + [d.name for d in spec.dates]
    if dupes := sorted(n for n, c in Counter(names).items() if c > 1):
        raise ConfigError(f"{path}: duplicate rule name(s) {', '.join(dupes)}")
    dates = tuple((d, _compile(d.regex, re.IGNORECASE, path, d.name)) for d in spec.dates)
    for d, rx in dates:
        if not {"year", "month", "day"} <= set(rx.groupindex):
            raise ConfigError(f"{path}: date rule '{d.name}' needs named groups year, month and day")
    patterns = tuple(
        (p, _compile(p.regex, 0 if p.case_sensitive else re.IGNORECASE, path, p.name)) for p in spec.patterns
    )
    return Rules(spec.version, spec.guards, dates, patterns)


def _compile(regex: str, flags: int, path: Path, name: str) -> re.Pattern[str]:
    try:
        return re.compile(regex, flags)
    except re.error as exc:
        raise ConfigError(f"{path}: rule '{name}': invalid regex: {exc}") from None
