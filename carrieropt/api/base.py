"""Base API views: tenant scoping, JSON only, one error shape documented on every operation."""
from __future__ import annotations

import re
import zoneinfo
from contextlib import contextmanager
from decimal import Decimal

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.fields import empty
from rest_framework.generics import GenericAPIView
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer

from carrieropt.errors import Conflict, error_body
from carrieropt.models import Tenant


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.JSONField(), help_text="Per-field messages for invalid input.")
    active_session = serializers.UUIDField(required=False, help_text="On 409 session_active: the session in the way.")


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


# Every operation can answer these; documenting them once keeps the schema honest
# (schemathesis checks that every status it sees is documented).
ERROR_CODES = {
    "400": "Invalid input: `error.fields` says which field and why.",
    "401": "No or invalid credentials.",
    "403": "Authenticated but not allowed.",
    "404": "Not found, or belongs to another tenant: the row the path names, or one the body names "
           "(`error.fields` says which).",
}
# Writes can also clash with what is stored (a name already taken, a session already running).
WRITE_ERROR_CODES = {"409": "Conflicts with a stored row: `error.fields` says which field."}


# Ids are 64-bit: a larger number can name no row (and SQLite cannot even compare with it).
MAX_ID = 2**63 - 1
# Text the API stores: no NUL (DRF refuses it), and when blank is not allowed, more than whitespace
# (DRF trims it first). Python's \s is exactly what str.strip() removes.
TEXT_PATTERN = r"^[^\x00]*$"
NONBLANK_TEXT_PATTERN = r"^[^\x00]*[^\s\x00][^\x00]*$"
TIME_ZONES = sorted(zoneinfo.available_timezones())


def decimal_pattern(field: serializers.DecimalField) -> str:
    """The strings a decimal field takes: digits with an optional fraction, within max_digits and
    decimal_places, no sign when it cannot be negative (no exponent, no spaces: the schema says it exactly)."""
    sign = "" if field.min_value is not None and field.min_value >= 0 else "-?"
    places = field.decimal_places
    whole = None if field.max_digits is None else field.max_digits - (places or 0)
    digits = r"\d+" if whole is None else (rf"\d{{1,{whole}}}" if whole > 0 else "0")
    fraction = "" if not places else rf"(?:\.\d{{1,{places}}})?"
    # A minimum no larger than the smallest step (0.01 with 2 places) means "not zero": some digit is not 0.
    positive = (field.min_value is not None and places is not None
                and 0 < field.min_value <= Decimal(1).scaleb(-places))
    # (?!\n): a pattern's $ would also match before a final newline.
    return rf"^{'(?=[0-9.]*[1-9])' if positive else ''}{sign}{digits}{fraction}(?!\n)$"


def _text_pattern(field) -> str | None:
    if not isinstance(field, serializers.CharField) or isinstance(field, (serializers.RegexField,)):
        return None
    return TEXT_PATTERN if field.allow_blank or not field.trim_whitespace else NONBLANK_TEXT_PATTERN


class ApiSchema(AutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        codes = {**ERROR_CODES, **(WRITE_ERROR_CODES if self.method in ("POST", "PUT", "PATCH") else {})}
        for code, description in codes.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(ErrorSerializer, code, direction=direction)
                responses[code]["description"] = description
        return responses

    def _get_request_for_media_type(self, serializer, direction="request"):
        schema, required = super()._get_request_for_media_type(serializer, direction)
        # An input whose every field is optional can still need a body (`schema_rules` say which fields together).
        return schema, required or bool(getattr(serializer, "schema_rules", ()))

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        kind = serializer if isinstance(serializer, type) else type(serializer)
        if direction == "request" and issubclass(kind, StrictInput):
            schema["additionalProperties"] = False  # StrictInput refuses fields it does not know
        if direction == "request":
            # Fields of which a request may give one at most (the server refuses more with a 400), and any other
            # rule across fields the input declares (`schema_rules`: JSON schema objects all of which hold).
            rules = [{"not": {"required": list(names)}} for names in getattr(kind, "exclusive_fields", ())]
            rules += list(getattr(kind, "schema_rules", ()))
            if rules:
                schema.update(rules[0] if len(rules) == 1 else {"allOf": rules})
        return schema

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        """Request fields say exactly what the server takes (StrictInput checks the same rules)."""
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if direction != "request" or field.read_only or "type" not in schema:
            return schema
        if isinstance(field, serializers.DecimalField):
            schema["pattern"] = decimal_pattern(field)
        elif (pattern := _text_pattern(field)) is not None and schema.get("type") == "string" \
                and "enum" not in schema and "format" not in schema:
            schema["pattern"] = pattern
            if not field.allow_blank:
                schema["minLength"] = max(1, schema.get("minLength", 0))
        if getattr(field, "field_name", "") == "billing_timezone":
            schema.pop("pattern", None)
            schema.pop("maxLength", None)
            schema["enum"] = TIME_ZONES
        if isinstance(field, serializers.PrimaryKeyRelatedField) and schema.get("type") == "integer":
            schema.update(minimum=1, maximum=MAX_ID)
        return schema


class JsonOnly(BaseContentNegotiation):
    """The API speaks JSON whatever the client asks for (errors included)."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 1000

    def get_page_size(self, request):
        """An absent page_size is the default; anything but a whole number 1..1000 is a 400 naming it."""
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not re.fullmatch(r"[0-9]{1,4}", raw) or not 1 <= int(raw) <= self.max_page_size:
            raise ValidationError({self.page_size_query_param: [
                f"{raw!r} is not a whole number from 1 to {self.max_page_size}."]})
        return int(raw)

    last_page_strings = ()  # the schema says page is a number; "last" would be a second meaning

    def get_page_number(self, request, paginator):
        """Absent is page 1; a number past the end is DRF's 404; anything but a number 1.. is a 400 naming it."""
        raw = request.query_params.get(self.page_query_param)
        if raw is None:
            return 1
        if not re.fullmatch(r"[0-9]{1,19}", raw) or not 1 <= int(raw) <= MAX_ID:
            raise ValidationError({self.page_query_param: [f"{raw!r} is not a page number (1, 2, …)."]})
        return int(raw)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
            elif parameter["name"] == self.page_query_param:
                parameter["schema"].update(minimum=1, maximum=MAX_ID)
        return parameters


def user_tenants(user):
    """The tenants a user belongs to, as a subquery (no extra round trip)."""
    return Tenant.objects.filter(users=user).values("pk")


class TenantApi(GenericAPIView):
    """Base for every API view: the querysets it serves are scoped to the caller's tenants."""

    schema = ApiSchema()
    renderer_classes = [JSONRenderer]
    parser_classes = [JSONParser]
    content_negotiation_class = JsonOnly
    pagination_class = Pagination

    @property
    def tenants(self):
        return user_tenants(self.request.user)

    def query(self, serializer_class) -> dict:
        """Validated query parameters (400 with per-field messages when invalid)."""
        params = serializer_class(data=self.request.query_params.dict())
        params.is_valid(raise_exception=True)
        return params.validated_data


# Problems with what is stored rather than with the request: a unique name already taken, a stored
# carrier key that would be sent somewhere else (send it again). 409, not 400.
CONFLICT_CODES = {"unique", "unique_together", "key_needed"}


@contextmanager
def as_api_validation():
    """A service's Django ValidationError becomes a 400 with the same per-field messages; when every
    problem is a clash with what is stored (CONFLICT_CODES), it is a 409 with those messages."""
    try:
        yield
    except DjangoValidationError as exc:
        if hasattr(exc, "error_dict"):
            codes = {e.code for errors in exc.error_dict.values() for e in errors}
            if codes and codes <= CONFLICT_CODES:
                fields = exc.message_dict
                first = next(iter(fields.values()))[0]
                raise Conflict(first, extra={"fields": fields}) from exc
            raise ValidationError(exc.message_dict) from exc
        raise ValidationError({"non_field_errors": exc.messages}) from exc


def _json_type_error(field, value) -> str | None:
    """Why `value` (as parsed from JSON) is not of the type the field's schema declares, or None."""
    if value is None:
        return None  # DRF's own "may not be null" says it when null is not allowed
    if isinstance(field, serializers.ManyRelatedField):
        if not isinstance(value, list):
            return "Must be a list of ids."
        wrong = [v for v in value if isinstance(v, bool) or not isinstance(v, int)]
        return f"Must be a list of whole-number ids, not {wrong[0]!r}." if wrong else None
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else "Must be true or false."
    if isinstance(field, (serializers.IntegerField, serializers.PrimaryKeyRelatedField)):
        if isinstance(value, bool) or not isinstance(value, int):
            return "Must be a whole number."
        return None
    if isinstance(field, serializers.DecimalField):
        # re.search, as JSON Schema validators match a pattern.
        if not isinstance(value, str) or not re.search(decimal_pattern(field), value):
            places = field.decimal_places
            return (f"Must be a decimal number written as a string, like \"12.50\""
                    f"{f' (at most {places} decimal places)' if places else ''}"
                    f"{'' if field.min_value is None or field.min_value < 0 else ', not negative'}.")
        return None
    if isinstance(field, (serializers.CharField, serializers.ChoiceField, serializers.UUIDField,
                          serializers.DateField, serializers.DateTimeField)):
        return None if isinstance(value, str) else "Must be a string."
    return None


# Mixin for input serializers: JSON values must have the type the schema declares (DRF would turn
# 1 into "1", "true" into True, 5 into Decimal 5), and a field it does not know (a typo) is refused
# rather than ignored. Each wrong field is named in one 400. (A comment, not a docstring: the schema
# would show it as the description of every input that has none of its own.)
class StrictInput:

    def to_internal_value(self, data):
        if isinstance(data, dict):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            errors = {name: ["Not a field of this request."] for name in data if name not in writable}
            for name, field in self.fields.items():
                value = data.get(name, empty)
                if value is empty or field.read_only:
                    continue
                if (problem := _json_type_error(field, value)) is not None:
                    errors[name] = [problem]
            if errors:
                raise ValidationError(errors)
        return super().to_internal_value(data)


def scope_field(serializer: serializers.Serializer, name: str, queryset) -> None:
    """Limit a related-object input field to the rows the caller may see."""
    field = serializer.fields[name]
    target = getattr(field, "child_relation", field)
    target.queryset = queryset


@csrf_exempt  # it changes nothing; without this a POST would get Django's HTML 403 instead of the JSON 404
def api_not_found(request, *args, **kwargs):
    """Unknown paths under /api/ answer in the API's JSON error shape, not Django's HTML page."""
    return JsonResponse(error_body("not_found", "No such API endpoint."), status=404)
