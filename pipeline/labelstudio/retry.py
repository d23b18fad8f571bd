"""The Label Studio client's error and its one retry policy (what is tried again, how long it waits first)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.common.errors import PipelineError

MAX_DELAY_S = 10.0  # the longest wait between two attempts


class LabelStudioError(PipelineError):
    """A Label Studio request that failed for good (after retries); `status` is the HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RetryPolicy:
    """When a Label Studio call is tried again and how long it waits first; every call of the pipeline uses it."""

    retries: int = 4
    backoff_s: float = 0.5
    timeout_s: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    @property
    def attempts(self) -> int:
        """Attempts in all for a call that may be repeated."""
        return 1 + self.retries

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based): exponential, capped at MAX_DELAY_S."""
        return min(self.backoff_s * 2 ** (attempt - 1), MAX_DELAY_S)

    @staticmethod
    def transient(status: int | None) -> bool:
        """True for a failure that another attempt may not meet: no answer (None), 429 or any 5xx; never other 4xx."""
        return status is None or status == 429 or status >= 500

    def wait_to_retry(self, status: int | None, attempt: int, idempotent: bool = True) -> bool:
        """After failed attempt `attempt`: sleep the back-off and return True when another attempt is allowed."""
        if not (idempotent and self.transient(status) and attempt < self.attempts):
            return False
        self.sleep(self.delay(attempt))
        return True
