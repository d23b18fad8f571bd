"""Errors shared by every stage: configuration errors stop at once, bad records are counted.

Exit codes of `python -m pipeline` (README, "Exit codes"): 0 success; 1 only for a bug (a traceback: no
input should cause one); 2 bad params, paths or command line (click's usage errors are 2 as well); 3 unusable
input (a file, a record); 4 too many bad records (`max_bad_share` passed); 5 a service such as Label Studio
or the Hub failed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

MAX_ERROR_CHARS = 300  # an error line longer than this is cut: a value quoted in it may be of any size


def one_line(message: str, limit: int = MAX_ERROR_CHARS) -> str:
    """`message` as one line (its line breaks made spaces) of at most `limit` characters, cut with an ellipsis."""
    text = " ".join(message.splitlines())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class PipelineError(Exception):
    """An error reported to the user as one line, with a non-zero exit code; the base class is a failed service."""

    exit_code = 5


class ConfigError(PipelineError):
    """A bad configuration (params, paths, model): the stage stops before doing any work."""

    exit_code = 2


class InputError(PipelineError):
    """Unusable input data (a file or a record) that stops the stage."""

    exit_code = 3


class BadShareError(InputError):
    """More bad records than the stage's `max_bad_share` allows."""

    exit_code = 4


@dataclass
class BadRecords:
    """Collects bad records of one stage: each is reported on stderr, skipped and counted."""

    stage: str
    max_share: float
    problems: list[dict[str, str]] = field(default_factory=list)
    quiet: bool = False
    seen: int = 0  # records read so far, good or bad (read_jsonl counts every non-blank line it reads)

    def add(self, where: str, message: str) -> None:
        """Record and report one bad record; `where` names the file and line or field."""
        self.problems.append({"where": where, "error": message})
        if not self.quiet:
            print(f"{self.stage}: skipped {where}: {message}", file=sys.stderr)

    def __len__(self) -> int:
        return len(self.problems)

    def check(self, total: int | None = None) -> None:
        """Fail the stage when the share of bad records among `total` (default: records seen) passes the threshold."""
        if total is None:
            total = self.seen
        if total == 0 and not self.problems:
            return
        share = len(self.problems) / max(total, 1)
        if share > self.max_share:
            raise BadShareError(
                f"{self.stage}: {len(self.problems)} of {total} records are bad "
                f"({share:.0%} > max_bad_share {self.max_share:.0%}); first: "
                f"{self.problems[0]['where']}: {self.problems[0]['error']}"
            )
