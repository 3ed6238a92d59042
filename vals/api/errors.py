"""One JSON error shape for every API response: {"error": {"type", "message"}}."""

from ninja import Schema


class ErrorDetail(Schema):
    type: str
    message: str
    stack: str | None = None


class Error(Schema):
    error: ErrorDetail


class ApiError(Exception):
    def __init__(self, status, kind, message, headers=None):
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers or {}


def not_found(what="No such val."):
    return ApiError(404, "not_found", what)


def bad_request(message):
    return ApiError(400, "bad_request", message)


# Declared on every operation so the OpenAPI document describes what can come back.
ERRORS = {400: Error, 401: Error, 403: Error, 404: Error, 429: Error}


def page_not_found(request, exception=None):
    """The site's 404: JSON in the one error shape under /v1/, the HTML page elsewhere."""
    from django.http import JsonResponse
    from django.views.defaults import page_not_found as html_page_not_found

    if request.path.startswith("/v1/"):
        return JsonResponse({"error": {"type": "not_found", "message": "Not found."}}, status=404)
    return html_page_not_found(request, exception)
