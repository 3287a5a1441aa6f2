"""Schedule slots: cron expressions in a time zone (cronsim), or fixed intervals.

Pure functions of their arguments: no clock is read. A cron slot is evaluated in the schedule's
IANA time zone through `zoneinfo`, which reads the time zone database; that database is data the
replicas must share (the same tzdata on every replica), as they share code.
cronsim follows cron's own daylight-saving rules (a skipped local time fires once, just after the
jump; a repeated local hour fires once) and is small, pure Python and maintained.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
CRON_CHARS_MAX: Final = 128
TZ_CHARS_MAX: Final = 64
EVERY_MS_MIN: Final = 1000
EVERY_MS_MAX: Final = 366 * 86_400_000


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def cron_problem(cron: str, tz: str) -> str | None:
    """Why a cron expression or time zone is unusable, or None."""
    if not 1 <= len(cron) <= CRON_CHARS_MAX:
        return f"cron must be 1 to {CRON_CHARS_MAX} characters"
    if not 1 <= len(tz) <= TZ_CHARS_MAX or zone(tz) is None:
        return f"unknown time zone {tz!r}"
    try:
        CronSim(cron, EPOCH)
    except CronSimError as exc:
        return f"bad cron expression {cron!r}: {exc}"
    except Exception as exc:  # anything else cronsim's parser raises on odd input: apply must not raise
        return f"bad cron expression {cron!r}: {type(exc).__name__}"
    return None


def next_slot(cron: str, tz: str, every_ms: int, after_ms: int) -> int | None:
    """The first slot strictly after `after_ms`, or None when there is none (within cronsim's range)."""
    if every_ms > 0:
        return (after_ms // every_ms + 1) * every_ms
    where = zone(tz)
    if where is None or after_ms < 0:
        return None
    start = (EPOCH + timedelta(milliseconds=after_ms)).astimezone(where)
    try:
        when = next(CronSim(cron, start))
    except Exception:  # no next slot within cronsim's range, or an expression it cannot evaluate
        return None
    ms = (when - EPOCH) // timedelta(milliseconds=1)
    return ms if ms > after_ms else None


def is_slot(cron: str, tz: str, every_ms: int, slot_ms: int) -> bool:
    return slot_ms > 0 and next_slot(cron, tz, every_ms, slot_ms - 1) == slot_ms


def jitter_of(schedule_id: str, slot_ms: int, jitter_ms: int) -> int:
    """The fixed delay of one slot within [0, jitter_ms]: every leader computes the same one."""
    if jitter_ms <= 0:
        return 0
    h = hashlib.blake2b(f"{schedule_id}\0{slot_ms}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") % (jitter_ms + 1)


def iso_compact(ms: int) -> str:
    """A slot as 20261203T020000Z (UTC; milliseconds when not whole seconds), for group ids."""
    when = EPOCH + timedelta(milliseconds=ms)
    text = when.strftime("%Y%m%dT%H%M%S")
    if ms % 1000:
        text += f".{ms % 1000:03d}"
    return text + "Z"
