import json
from datetime import datetime, timezone

from django import template

register = template.Library()


@register.filter
def pretty_json(value):
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


@register.filter
def log_time(timestamp_ms):
    """A log line's timestamp (milliseconds since the epoch) as HH:MM:SS.mmm UTC."""
    try:
        moment = datetime.fromtimestamp(timestamp_ms / 1000, tz=timezone.utc)
    except (TypeError, ValueError, OverflowError):
        return ""
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


@register.filter
def val_shown_to(evaluation, user):
    """The evaluation's val if user may still see it, else None: a val made private (or
    renamed so) after someone ran it shows them nothing of its name."""
    val = evaluation.val
    return val if val is not None and val.is_visible_to(user) else None
