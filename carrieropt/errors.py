"""One application exception hierarchy, mapped to one JSON error shape in the API."""
from __future__ import annotations

from rest_framework import status
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
    else:
        response.data = error_body("invalid", "The request has invalid fields.", data if isinstance(data, dict) else {"non_field_errors": data})
    return response
