"""Base API views: tenant scoping, JSON only, one error shape documented on every operation."""
from __future__ import annotations

from contextlib import contextmanager

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer

from carrieropt.errors import error_body
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
    "404": "Not found, or belongs to another tenant.",
}


class ApiSchema(AutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code, description in ERROR_CODES.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(ErrorSerializer, code, direction=direction)
                responses[code]["description"] = description
        return responses


class JsonOnly(BaseContentNegotiation):
    """The API speaks JSON whatever the client asks for (errors included)."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 1000


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


@contextmanager
def as_api_validation():
    """A service's Django ValidationError becomes a 400 with the same per-field messages."""
    try:
        yield
    except DjangoValidationError as exc:
        if hasattr(exc, "error_dict"):
            raise ValidationError(exc.message_dict) from exc
        raise ValidationError({"non_field_errors": exc.messages}) from exc


def scope_field(serializer: serializers.Serializer, name: str, queryset) -> None:
    """Limit a related-object input field to the rows the caller may see."""
    field = serializer.fields[name]
    target = getattr(field, "child_relation", field)
    target.queryset = queryset


@csrf_exempt  # it changes nothing; without this a POST would get Django's HTML 403 instead of the JSON 404
def api_not_found(request, *args, **kwargs):
    """Unknown paths under /api/ answer in the API's JSON error shape, not Django's HTML page."""
    return JsonResponse(error_body("not_found", "No such API endpoint."), status=404)
