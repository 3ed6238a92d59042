"""Diffs of large versions cost time linear in their size.

difflib's matcher costs up to the product of the changed parts' lengths: two versions
of 16,000 lines, each a random pick of a hundred-odd short lines, took 1.5 s to diff,
and a megabyte of such lines minutes, at every anonymous view of the diff page.
"""

import random

import pytest

from tests.factory import make_user, make_val
from vals.views import DIFF_BUDGET, _diff_rows

pytestmark = pytest.mark.django_db


def test_a_small_change_is_shown_line_by_line_with_its_context():
    old = "\n".join(f"line {n}" for n in range(20))
    new = old.replace("line 10", "LINE 10")
    assert [(row["kind"], row["text"]) for row in _diff_rows(old, new)] == [
        ("hunk", "@@ -8,7 +8,7 @@"),
        *[("context", f" line {n}") for n in (7, 8, 9)],
        ("removed", "-line 10"),
        ("added", "+LINE 10"),
        *[("context", f" line {n}") for n in (11, 12, 13)],
    ]


def test_a_change_too_large_to_match_is_shown_as_removed_then_added(anonymous_client):
    lines = 16_000
    assert lines * lines > DIFF_BUDGET
    pick = random.Random(0)
    old = "\n".join(f"{pick.randrange(lines // 110)}" for _ in range(lines))
    new = "\n".join(f"{pick.randrange(lines // 110)}" for _ in range(lines))
    val = make_val(make_user("bob"), name="big", code=old)
    val.save_version(new)

    page = anonymous_client.get("/v/bob/big/diff?a=0&b=1")

    assert page.status_code == 200
    kinds = [row["kind"] for row in page.context["rows"]]
    assert kinds == ["hunk"] + ["removed"] * lines + ["added"] * lines
