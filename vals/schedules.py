"""Cron val schedules: a 5-field cron expression in UTC, or an interval like "every 15 minutes"."""

import re
from dataclasses import dataclass
from datetime import timedelta

from croniter import croniter
from django.conf import settings
from django.core.exceptions import ValidationError

INTERVAL = re.compile(r"^every\s+(\d+)\s*(m|min|mins|minute|minutes|h|hr|hrs|hour|hours|d|day|days)$", re.I)
UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Schedule:
    text: str
    interval_seconds: int | None = None

    def next_after(self, moment):
        """The first run time strictly after moment."""
        if self.interval_seconds is not None:
            return moment + timedelta(seconds=self.interval_seconds)
        return croniter(self.text, moment).get_next(type(moment))


def parse_schedule(text):
    text = " ".join((text or "").split())
    if not text:
        raise ValidationError("A cron val needs a schedule, like “*/15 * * * *” or “every 15 minutes”.")
    minimum = settings.CRON_MIN_INTERVAL_SECONDS
    match = INTERVAL.match(text)
    if match:
        seconds = int(match.group(1)) * UNIT_SECONDS[match.group(2)[0].lower()]
        if seconds < minimum:
            raise ValidationError(f"Cron vals run at most once every {minimum} seconds.")
        return Schedule(text=text, interval_seconds=seconds)
    if len(text.split(" ")) != 5 or not croniter.is_valid(text):
        raise ValidationError(
            f"“{text}” is not a schedule. Use a cron expression with five fields (minute hour day month weekday, in UTC), "
            "like “0 9 * * 1”, or an interval like “every 2 hours”."
        )
    return Schedule(text=text)
