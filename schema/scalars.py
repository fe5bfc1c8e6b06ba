"""Date, DateTime and Time scalars with a bounded range and a stated format.

Strawberry's own scalars accept any ISO date, from year 1 to 9999. Such a date is no
booking, and it breaks arithmetic: 9999-12-31T23:00-05:00 overflows when turned into UTC,
and a day added to 9999-12-31 does not exist. Dates here must lie between the years
1900 and 2999; anything else is refused as bad input before any resolver runs (the same
error as any other unparseable value). The names and wire formats are Strawberry's; each
scalar also names the RFC 3339 production it follows (`@specifiedBy`), so that code
generators can map it to a date type instead of `unknown`."""

from __future__ import annotations

import datetime as dt
from typing import NewType

import dateutil.parser
import strawberry
from strawberry.exceptions import StrawberryInputCoercionError
from strawberry.schema.types.base_scalars import (
    DateDefinition,
    DateTimeDefinition,
    TimeDefinition,
)
from strawberry.types.scalar import ScalarDefinition

MIN_YEAR = 1900
MAX_YEAR = 2999


def _in_range(value: dt.date, kind: str, raw: str) -> None:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise StrawberryInputCoercionError(
            f'Value cannot represent a {kind}: "{raw[:40]}". '
            f"The year must be between {MIN_YEAR} and {MAX_YEAR}."
        )


def parse_datetime(value: object) -> dt.datetime:
    if not isinstance(value, str):
        raise StrawberryInputCoercionError(
            f'Value cannot represent a DateTime: "{str(value)[:40]}". Expected a string.'
        )
    try:
        parsed = dateutil.parser.isoparse(value)
    except (ValueError, OverflowError) as exc:
        raise StrawberryInputCoercionError(
            f'Value cannot represent a DateTime: "{value[:40]}". {exc}'
        ) from None
    _in_range(parsed, "DateTime", value)
    return parsed


def parse_date(value: object) -> dt.date:
    if not isinstance(value, str):
        raise StrawberryInputCoercionError(
            f'Value cannot represent a Date: "{str(value)[:40]}". Expected a string.'
        )
    try:
        parsed = dt.date.fromisoformat(value)
    except ValueError as exc:
        raise StrawberryInputCoercionError(
            f'Value cannot represent a Date: "{value[:40]}". {exc}'
        ) from None
    _in_range(parsed, "Date", value)
    return parsed


RFC_3339 = "https://datatracker.ietf.org/doc/html/rfc3339#section-5.6"

BoundedDateTime = ScalarDefinition(
    name=DateTimeDefinition.name,
    description="An instant as an RFC 3339 `date-time`, e.g. `2026-12-01T09:00:00+00:00`; "
    "answers always carry the UTC offset. Years 1900 to 2999.",
    specified_by_url=RFC_3339,
    serialize=DateTimeDefinition.serialize,
    parse_value=parse_datetime,
    parse_literal=None,
    origin=dt.datetime,
)

BoundedDate = ScalarDefinition(
    name=DateDefinition.name,
    description="A calendar day as an RFC 3339 `full-date`, `YYYY-MM-DD`. Years 1900 to 2999.",
    specified_by_url=RFC_3339,
    serialize=DateDefinition.serialize,
    parse_value=parse_date,
    parse_literal=None,
    origin=dt.date,
)

# A time of day without a date or offset (an availability pattern's local start and end).
LocalTime = ScalarDefinition(
    name=TimeDefinition.name,
    description="A time of day as an RFC 3339 `partial-time`, `HH:MM:SS`, without an offset.",
    specified_by_url=RFC_3339,
    serialize=TimeDefinition.serialize,
    parse_value=TimeDefinition.parse_value,
    parse_literal=None,
    origin=dt.time,
)

SCALAR_MAP: dict[object, ScalarDefinition] = {
    dt.datetime: BoundedDateTime,
    dt.date: BoundedDate,
    dt.time: LocalTime,
}


def _parse_time_range(value: object) -> str:
    """An ISO 8601 interval of two instants with offsets, `start/end`, end after start."""
    if not isinstance(value, str) or len(value) > 80 or value.count("/") != 1:
        raise StrawberryInputCoercionError(
            f'Value cannot represent a TimeRange: "{str(value)[:80]}".'
        )
    start_text, end_text = value.split("/")
    try:
        start, end = dt.datetime.fromisoformat(start_text), dt.datetime.fromisoformat(end_text)
    except ValueError as exc:
        raise StrawberryInputCoercionError(
            f'Value cannot represent a TimeRange: "{value}". {exc}'
        ) from None
    if start.tzinfo is None or end.tzinfo is None or end <= start:
        raise StrawberryInputCoercionError(
            f'Value cannot represent a TimeRange: "{value}": both instants need a UTC offset '
            "and the end must be after the start."
        )
    return value


# A stretch of time as one string (the availability feed sends many: one string each is
# far cheaper to produce and read than an object with two fields).
TimeRange = strawberry.scalar(
    NewType("TimeRange", str),
    name="TimeRange",
    description="A stretch of time as an ISO 8601 interval of two instants with UTC "
    "offsets, `<start>/<end>`, the end excluded, e.g. "
    "`2026-12-01T09:00:00+00:00/2026-12-01T12:00:00+00:00`.",
    specified_by_url="https://www.iso.org/iso-8601-date-and-time-format.html",
    serialize=str,
    parse_value=_parse_time_range,
)
