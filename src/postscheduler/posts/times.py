"""Times as people write them in post files, and durations as written in scheduler.yaml.

A time without an offset is a wall-clock time in the configured zone. Around a DST change
such a time can name no instant (the clocks skipped it) or two (the clocks repeated it); we
refuse to guess and name both candidates so the user can pick one.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import TimeError

_TIME_RE = re.compile(
    r"""^\s*
    (?P<date>\d{4}-\d{2}-\d{2})
    (?:[T\s]+(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<frac>\d{1,6}))?)?)?
    \s*(?P<offset>Z|[+-]\d{2}:?\d{2})?
    (?:\s+(?P<zone>[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+)*))?
    \s*$""",
    re.VERBOSE,
)

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def get_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder, like "America"
        raise TimeError(
            f"unknown time zone {name!r} (use an IANA name such as Europe/London)"
        ) from None


def _fmt(instant: dt.datetime) -> str:
    return instant.isoformat(sep=" ", timespec="minutes")


def localize(naive: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """Attach ``zone`` to a wall-clock time, refusing DST gaps and overlaps."""
    first = naive.replace(tzinfo=zone, fold=0)
    second = naive.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first
    # The two folds disagree: the wall time is either skipped or repeated. A skipped time
    # does not survive a round trip through UTC.
    candidates = sorted((first, second), key=lambda c: c.astimezone(dt.UTC))
    # Said in the post's own clock first (what a volunteer reads on the wall), then as the
    # exact form to write.
    # (Through UTC: astimezone to the datetime's own zone would not normalise a skipped time.)
    walls = [c.astimezone(dt.UTC).astimezone(zone) for c in candidates]
    shown = " or ".join(f"{w:%H:%M %Z} (write {w.isoformat(timespec='minutes')})" for w in walls)
    if first.astimezone(dt.UTC).astimezone(zone).replace(tzinfo=None) != naive:
        raise TimeError(
            f"{_fmt(naive)} does not exist in {zone.key}: the clocks jump past it at the DST "
            f"change; did you mean {shown}?"
        )
    raise TimeError(
        f"{_fmt(naive)} happens twice in {zone.key} (the clocks go back): did you mean {shown}?"
    )


# Times a campaign can mean: outside these, a time is a typo, and one at the edge of what
# Python represents (year 9999 with a negative offset) overflows when converted to UTC.
EARLIEST_YEAR, LATEST_YEAR = 1970, 2100


def parse_time(text: str, zone: ZoneInfo) -> dt.datetime:
    """Parse ``2027-01-14 09:00``, ``2027-01-14T09:00+01:00`` or ``2027-01-14 09:00 Europe/Lima``.

    Returns an aware datetime. A date alone means midnight. Years outside 1970–2100 are
    refused.
    """
    try:
        parsed = _parse_time(text, zone)
        parsed.astimezone(dt.UTC)  # must be representable in UTC too
    except OverflowError:
        parsed = None
    if parsed is None or not EARLIEST_YEAR <= parsed.year <= LATEST_YEAR:
        raise TimeError(
            f"{text!r} is outside the years {EARLIEST_YEAR}–{LATEST_YEAR}: "
            "check the year (write it like 2027-01-14 09:00)"
        )
    return parsed


def _parse_time(text: str, zone: ZoneInfo) -> dt.datetime:
    if len(text) >= 16 and text[10] in " T":  # the usual forms: let C code parse them
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            return localize(parsed, zone) if parsed.tzinfo is None else parsed
    m = _TIME_RE.match(text)
    if not m:
        raise TimeError(
            f"cannot read {text!r} as a time: write it like 2027-01-14 09:00 "
            "(in the configured time zone), 2027-01-14T09:00+01:00, or 2027-01-14 09:00 Europe/Lima"
        )
    try:
        date = dt.date.fromisoformat(m["date"])
        clock = dt.time(
            int(m["hour"] or 0),
            int(m["minute"] or 0),
            int(m["second"] or 0),
            int((m["frac"] or "0").ljust(6, "0")),
        )
    except ValueError as exc:
        raise TimeError(f"{text!r} is not a valid date and time: {exc}") from None
    naive = dt.datetime.combine(date, clock)
    if m["offset"] and m["zone"]:
        raise TimeError(f"{text!r} gives both an offset and a zone name: keep one")
    if m["offset"]:
        raw = m["offset"]
        if raw == "Z":
            return naive.replace(tzinfo=dt.UTC)
        sign = -1 if raw[0] == "-" else 1
        digits = raw[1:].replace(":", "")
        offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        if offset >= dt.timedelta(hours=24):
            raise TimeError(f"offset {raw} in {text!r} is out of range")
        return naive.replace(tzinfo=dt.timezone(sign * offset))
    if m["zone"]:
        zone = get_zone(m["zone"])
    return localize(naive, zone)


MAX_DURATION = dt.timedelta(days=3650)  # longer than any wait a campaign means


def parse_duration(value: str | int | float) -> dt.timedelta:
    """``30s``, ``5m``, ``1h30m``, ``2d``; a bare number is seconds. At most ten years."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("a duration must be like 30s, 5m, 1h30m or 2d")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError("a duration must be a number of seconds, zero or more")
        return _bounded(float(value), value)
    text = value.strip().lower()
    pos = 0
    total = 0.0
    for m in _DURATION_RE.finditer(text):
        if text[pos : m.start()].strip():
            break
        total += float(m[1]) * _DURATION_UNITS[m[2]]
        pos = m.end()
    if pos == 0 or text[pos:].strip():
        raise ValueError(f"cannot read {value!r} as a duration: write it like 30s, 5m, 1h30m or 2d")
    return _bounded(total, value)


def _bounded(seconds: float, value: object) -> dt.timedelta:
    if not math.isfinite(seconds) or seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{value!r} is longer than {MAX_DURATION.days} days: check the number")
    return dt.timedelta(seconds=seconds)
