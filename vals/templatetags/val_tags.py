import markdown as markdown_lib
import nh3
from django import template
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def markdown(text):
    """Render a readme: Markdown to HTML, then sanitised so no script survives."""
    html = markdown_lib.markdown(text or "", extensions=["fenced_code", "tables"])
    return mark_safe(nh3.clean(html, link_rel="noopener noreferrer nofollow"))
