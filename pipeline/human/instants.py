"""Instants of Label Studio timestamps, compared as instants, never as text."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

EARLIEST = datetime.min.replace(tzinfo=UTC)  # the time of an annotation that carries none: older than any other


def parse_time(stamp: Any) -> datetime | None:
    """An ISO-8601 timestamp (`Z` or an offset such as `+02:00`) as an aware datetime, or None if it is not one.

    Compared as instants, never as text (`10:00+02:00` is before `09:00Z`); a stamp without an offset is UTC, as
    Label Studio writes them; an empty or missing stamp is EARLIEST.
    """
    if stamp is None or stamp == "":
        return EARLIEST
    if not isinstance(stamp, str):
        return None
    try:
        when = datetime.fromisoformat(stamp.strip())
        return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):  # not ISO-8601, or out of datetime's range in UTC
        return None
