"""A readme can't make pages slow (the second attack review).

Python-Markdown rescanned unmatched brackets: a readme of 6,000 "[" took 4 s to render,
one at the 64 KB limit about seven minutes, and every list rendered each val's whole
readme for the first 140 characters of its summary, so the home page took that long for
every visitor. Readmes are rendered by cmark, in time linear in their length, and a
list's summary is made from the readme's start alone.
"""

import concurrent.futures

import pytest
from django.conf import settings
from django.test import Client

from tests.factory import make_user, make_val

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = settings.VAL_MAX_README_BYTES
PATHOLOGICAL_READMES = {
    "brackets": "[" * LIMIT,
    "unclosed links": "[a](" * (LIMIT // 4),
    "unclosed images": "![" * (LIMIT // 2),
    "autolinks": "<http://a" * (LIMIT // 9),
    "emphasis": "*a_" * (LIMIT // 3),
}

# A bound no healthy render comes near (the test fails there; it times nothing).
ANSWERED_WITHIN_SECONDS = 60


def answered(path):
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        response = pool.submit(Client().get, path).result(timeout=ANSWERED_WITHIN_SECONDS)
    finally:
        pool.shutdown(wait=False)  # a render still going on is the failure, not something to wait for
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize("shape", PATHOLOGICAL_READMES)
def test_a_pathological_readme_leaves_the_home_page_and_its_val_page_answering(shape):
    make_val(make_user("bob"), name="noisy", readme=PATHOLOGICAL_READMES[shape])

    assert "noisy" in answered("/")
    assert "noisy" in answered("/v/bob/noisy")


def test_readmes_still_render_as_markdown_and_lists_show_their_start_as_text():
    make_val(make_user("bob"), name="doc", readme="# Weather & wind\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n" + "more " * 500)

    page = answered("/v/bob/doc")
    assert "<h1>Weather &amp; wind</h1>" in page and "<td>1</td>" in page
    assert "Weather &amp; wind" in answered("/")
