"""Val names: JavaScript identifiers that also fit in hostnames and email addresses."""

import random
import re

from django.core.exceptions import ValidationError

# ASCII identifiers only, without `$`: a val's name also appears in its HTTP origin
# (alice-foo.web.host) and its email address (alice.foo@host).
VAL_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")

JAVASCRIPT_RESERVED_WORDS = frozenset(
    """
    await break case catch class const continue debugger default delete do else enum
    export extends false finally for function if implements import in instanceof
    interface let new null package private protected public return static super switch
    this throw true try typeof var void while with yield
    """.split()
)


def validate_val_name(value):
    if not VAL_NAME_PATTERN.match(value or ""):
        raise ValidationError(
            "A val name is a JavaScript identifier: letters, digits and underscores, "
            "not starting with a digit, at most 48 characters.",
            code="invalid",
        )
    if value in JAVASCRIPT_RESERVED_WORDS:
        raise ValidationError(f"“{value}” is a reserved word in JavaScript.", code="reserved")


ADJECTIVES = "brave calm clever eager fancy gentle happy jolly kind lively lucky mellow merry nimble proud quick quiet shiny swift witty".split()
ANIMALS = "Otter Panda Heron Lynx Koala Robin Badger Falcon Gecko Ibis Lemur Marten Newt Puffin Quail Raven Seal Tapir Wombat Yak".split()


def random_val_name():
    return random.choice(ADJECTIVES) + random.choice(ANIMALS)
