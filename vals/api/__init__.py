"""The REST API under /v1/: django-ninja, token auth, one JSON error shape everywhere.

django-ninja rather than Django REST framework: the schema comes from type hints, the
OpenAPI document and docs come for free, and async views (needed to start evaluations
on the server's event loop) are first-class.
"""

from vals.api.app import api

__all__ = ["api"]
