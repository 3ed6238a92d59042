import html

import cmarkgfm
import nh3
from django import template
from django.utils.html import strip_tags
from django.utils.safestring import mark_safe

register = template.Library()

# How much of a readme a list's one-line summary is made from: rendering it all for
# every val of a list cost the whole readme each time, for the first 140 characters.
SUMMARY_SOURCE_CHARACTERS = 1000


@register.filter
def markdown(text):
    """Render a readme: GitHub-flavoured Markdown to HTML with cmark (linear in its input:
    Python-Markdown rescanned unmatched brackets, so 64 KB of "[" took minutes), then
    sanitised so no script survives."""
    rendered = cmarkgfm.github_flavored_markdown_to_html(text or "")
    return mark_safe(nh3.clean(rendered, link_rel="noopener noreferrer nofollow"))


@register.filter
def readme_summary(text):
    """The start of a readme as plain text, for lists (then cut to length by the template)."""
    rendered = cmarkgfm.github_flavored_markdown_to_html((text or "")[:SUMMARY_SOURCE_CHARACTERS])
    return html.unescape(strip_tags(rendered))
