"""Small hand-written factories for test data."""

from django.test import AsyncClient

from accounts.models import User
from vals.models import Val


def make_user(username, **extra):
    user = User.objects.create_user(username=username, email=f"{username}@example.com", password="correct horse 1", **extra)
    return user


def make_val(owner, name="hello", code='export default () => "hi";\n', **extra):
    return Val.create(owner=owner, name=name, code=code, **extra)


def ticking_val(lines):
    """A val that logs "line 0", "line 1", ... one every 100 ms, then returns "done"."""
    return f"""\
export default async function () {{
  for (let i = 0; i < {lines}; i++) {{
    console.log(`line ${{i}}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }}
  return "done";
}}
"""


class VisitorFrom(AsyncClient):
    """An anonymous visitor at an address of their own (Django's test client says
    127.0.0.1 for everyone)."""

    def __init__(self, address):
        super().__init__()
        self.address = address

    def _base_scope(self, **request):
        return {**super()._base_scope(**request), "client": [self.address, 5000]}
