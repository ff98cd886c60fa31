"""One application exception hierarchy, mapped to one JSON error shape in the API."""
from __future__ import annotations

from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler


class ApplicationError(Exception):
    """A failure the user can act on: says what was wrong with which input."""

    code = "error"
    http_status = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, *, field: str | None = None, extra: dict | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra or {}


class ValidationFailed(ApplicationError):
    code = "invalid"


class Conflict(ApplicationError):
    code = "conflict"
    http_status = status.HTTP_409_CONFLICT


class NotFound(ApplicationError):
    code = "not_found"
    http_status = status.HTTP_404_NOT_FOUND


class ExternalServiceError(ApplicationError):
    code = "external_service"
    http_status = status.HTTP_502_BAD_GATEWAY


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def _error_codes(detail) -> set[str]:
    """The codes of every message in a DRF error detail (nested dicts and lists of ErrorDetail)."""
    if isinstance(detail, dict):
        return set().union(*map(_error_codes, detail.values())) if detail else set()
    if isinstance(detail, list):
        return set().union(*map(_error_codes, detail)) if detail else set()
    return {getattr(detail, "code", None)}


# A body that is valid but names a row that does not exist (or is another tenant's, which is the same to the
# caller): 404 naming the field, as a path naming such a row is. Any other problem with the request: 400.
MISSING_ROW_CODES = {"does_not_exist"}


def api_exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        fields = {exc.field: [exc.message]} if exc.field else {}
        body = error_body(exc.code, exc.message, fields)
        body["error"].update(exc.extra)
        return Response(body, status=exc.http_status)
    response = exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(data, dict) and "detail" in data and len(data) == 1:
        code = getattr(data["detail"], "code", "error")
        response.data = error_body(str(code), str(data["detail"]))
    elif isinstance(exc, ValidationError) and isinstance(data, dict) and data \
            and _error_codes(data) <= MISSING_ROW_CODES:
        response.status_code = status.HTTP_404_NOT_FOUND
        response.data = error_body("not_found", "The request names a row that does not exist (or is another "
                                                "tenant's).", data)
    else:
        response.data = error_body("invalid", "The request has invalid fields.", data if isinstance(data, dict) else {"non_field_errors": data})
    return response
