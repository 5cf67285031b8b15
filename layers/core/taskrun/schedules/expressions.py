"""EventBridge Scheduler's expressions (`at(...)`, `rate(...)`, `cron(...)`) and time zones:
one pattern each for the parser and the API document, and when each fires next."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aws_croniter import AwsCroniter
from aws_lambda_powertools import Logger
from pydantic import AfterValidator, StringConstraints, WithJsonSchema
from pydantic_core import PydanticCustomError

from taskrun.errors import FieldError, InvalidInput
from taskrun.models import format_time, utcnow

logger = Logger(child=True)


# Each kind's syntax, one pattern for the parser and the API document alike (JSON Schema's
# regular expressions, Rust's and Python's read them the same: ASCII digits, no lookaround).
# What a pattern cannot judge is checked apart: a real date, still ahead; a cron's fields
# as EventBridge Scheduler reads them, firing again.
_DATE_TIME = r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
AT_PATTERN = rf"at\(({_DATE_TIME})\)"
RATE_PATTERN = r"rate\((1 (?:minute|hour|day)|(?:[2-9]|[1-9][0-9]{1,5}) (?:minutes|hours|days))\)"
_CRON_FIELD = r"[0-9A-Za-z*?,/#-]+"
CRON_PATTERN = rf"cron\(({_CRON_FIELD}(?: {_CRON_FIELD}){{5}})\)"
EXPRESSION_PATTERN = f"^(?:{AT_PATTERN}|{RATE_PATTERN}|{CRON_PATTERN})$"
_AT, _RATE, _CRON = (re.compile(pattern) for pattern in (AT_PATTERN, RATE_PATTERN, CRON_PATTERN))
_UNIT = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
_SYNTAX = {
    "at(": "at(...) takes a date and time: at(yyyy-mm-ddThh:mm:ss)",
    "rate(": "rate(N unit) takes N from 1 to 999999 and a unit, singular for 1 (1 minute), else plural (5 minutes)",
    "cron(": "cron(...) takes six fields one space apart: minutes hours day-of-month month day-of-week year",
}


@dataclass(frozen=True)
class Expression:
    """A parsed `at(...)`, `rate(...)` or `cron(...)`, in its timezone."""

    text: str
    zone: ZoneInfo
    at: datetime | None = None  # a one-off's moment, in UTC
    period: timedelta | None = None
    cron: AwsCroniter | None = None

    @property
    def one_off(self) -> bool:
        return self.at is not None

    def next_after(self, moment: datetime, anchor: datetime) -> datetime | None:
        """The first firing strictly after `moment` (a rate fires at anchor, anchor + period, ...)."""
        if self.at is not None:
            return self.at if self.at > moment else None
        if self.period is not None:
            if moment < anchor:
                return anchor
            steps = (moment - anchor) // self.period + 1
            return anchor + steps * self.period
        assert self.cron is not None
        # the cron is read in the schedule's timezone: work on wall-clock time, then back to UTC
        wall = moment.astimezone(self.zone).replace(tzinfo=UTC)
        found = self.cron.get_next(wall)[0]
        if found is None:
            return None
        return found.replace(tzinfo=self.zone).astimezone(UTC)


def parse_expression(text: str, timezone: str, now: datetime | None = None) -> Expression:
    """Check an expression as EventBridge Scheduler would; InvalidInput names the field."""
    zone = parse_timezone(timezone)
    text = text.strip()
    if match := _AT.fullmatch(text):
        try:
            local = datetime.fromisoformat(match.group(1))
        except ValueError:
            raise _bad_expression(text, "at(...) takes a real date and time: yyyy-mm-ddThh:mm:ss") from None
        moment = local.replace(tzinfo=zone).astimezone(UTC)
        if now is not None and moment <= now:
            raise _bad_expression(text, f"at(...) is in the past ({format_time(moment)})")
        return Expression(text, zone, at=moment)
    if match := _RATE.fullmatch(text):
        value, unit = match.group(1).split(" ")
        return Expression(text, zone, period=int(value) * _UNIT[unit.rstrip("s")])
    if match := _CRON.fullmatch(text):
        try:
            cron = AwsCroniter(match.group(1))
        except Exception as error:  # the library's own errors, and what hostile text provokes
            raise _bad_expression(text, f"not a cron expression EventBridge Scheduler takes: {error}") from None
        expression = Expression(text, zone, cron=cron)
        try:
            if expression.next_after(now or utcnow(), now or utcnow()) is None:
                raise _bad_expression(text, "the cron expression never fires again")
        except InvalidInput:
            raise
        except Exception as error:
            raise _bad_expression(text, f"not a cron expression EventBridge Scheduler takes: {error}") from None
        return expression
    raise _bad_expression(text, syntax_problem(text))


def syntax_problem(text: str) -> str:
    """What is wrong with the shape of an expression EXPRESSION_PATTERN refuses."""
    kind = next((prefix for prefix in _SYNTAX if text.startswith(prefix)), None)
    if kind is None:
        return "must be at(yyyy-mm-ddThh:mm:ss), rate(N minutes|hours|days) or cron(min hour dom month dow year)"
    return _SYNTAX[kind]


def _check_syntax(text: str) -> str:
    """The request models' check of an expression's shape, by the pattern their document gives."""
    if not re.fullmatch(EXPRESSION_PATTERN, text):
        raise PydanticCustomError("expression_syntax", syntax_problem(text))
    return text


ExpressionText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=256),
    AfterValidator(_check_syntax),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 256, "pattern": EXPRESSION_PATTERN}),
]


def parse_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidInput(
            "the timezone is not one of the IANA time zones",
            [FieldError("body.timezone", "an IANA time zone such as Europe/Paris or UTC", name[:100])],
        ) from None


def _bad_expression(text: str, message: str) -> InvalidInput:
    return InvalidInput("the schedule expression is not valid", [FieldError("body.expression", message, text[:300])])
