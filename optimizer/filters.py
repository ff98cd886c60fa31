"""Filters of a run's SIM list (django-filter): the API's assignments, the workbench page and its CSV export read
the same query string through AssignmentFilterSet, so the three always show the same SIMs."""
from __future__ import annotations

import re

from django import forms
from django.core.validators import RegexValidator
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema_field

from carrieropt.api.base import MAX_ID, user_tenants
from devices.models import Customer
from optimizer.assignments import SORTS, iccid_prefix_range
from optimizer.models import DeviceAssignment
from rateplans.models import RatePlan

SORT_CHOICES = [("iccid", "ICCID"), ("-saving", "Largest saving first")]
assert {key for key, _ in SORT_CHOICES} == set(SORTS)


# What the schema says of a row id in the query (drf-spectacular reads it from the filter class), as of ids in paths.
ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": MAX_ID}


@extend_schema_field(ID_SCHEMA)
class IdFilter(filters.Filter):
    """A row id: a whole number 1..2**63-1 (a larger one can name no row)."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


class RowChoiceField(forms.ModelChoiceField):
    """A row chosen by id: an id that names no row the caller may see is "does_not_exist" (the API answers 404
    naming the field, as for ids in bodies); anything that is not an id stays invalid (400)."""

    def to_python(self, value):
        try:
            return super().to_python(value)
        except forms.ValidationError as exc:
            if re.fullmatch(r"[0-9]{1,19}", str(value)) and 1 <= int(value) <= MAX_ID:
                raise forms.ValidationError(exc.messages[0], code="does_not_exist") from None
            raise


@extend_schema_field(ID_SCHEMA)
class RowChoiceFilter(filters.ModelChoiceFilter):
    field_class = RowChoiceField


class TrueFalseField(forms.Field):
    """A query boolean as the schema says it: true or false (empty: no filter); "null", "1" or "yes" are a 400."""

    def to_python(self, value):
        if value in (None, ""):
            return None
        if value in ("true", "false"):
            return value == "true"
        raise forms.ValidationError(f"{value!r}: use true or false.", code="invalid")


class TrueFalseFilter(filters.BooleanFilter):
    field_class = TrueFalseField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", forms.TextInput)  # the raw string: django-filter's BooleanWidget reads "null" as no filter
        super().__init__(*args, **kwargs)


@extend_schema_field({"type": "string", "pattern": r"^\d*$", "maxLength": 22})
class IccidPrefixFilter(filters.CharFilter):
    """Leading ICCID digits; the schema says digits only, as the server checks."""


def tenant_customers(request):
    """The customers a caller may filter by: those of their own tenants (another tenant's id is refused)."""
    if request is None or not request.user.is_authenticated:
        return Customer.objects.none()
    return Customer.objects.filter(tenant__in=user_tenants(request.user))


class AssignmentFilterSet(filters.FilterSet):
    """Filters and order of a run's per-SIM recommendations. An empty value is no filter (the page's "all" and
    "any" choices submit `group=` and `from_plan=`). Each filter is served by an index on (run, …) or by the
    SIM's own row, so a first page of a million SIMs reads a page, not the table."""

    group = IdFilter(field_name="comm_group_id", help_text="Communication group id.")
    changed = TrueFalseFilter(help_text="true: only SIMs whose plan would change.")
    from_plan = filters.CharFilter(field_name="current_plan_id", method="plan_code", max_length=120,
                                   help_text="Only SIMs now on this rate plan (code).")
    to_plan = filters.CharFilter(field_name="recommended_plan_id", method="plan_code", max_length=120,
                                 help_text="Only SIMs recommended this rate plan (code).")
    customer = RowChoiceFilter(
        field_name="customer", queryset=tenant_customers, help_text="Only SIMs of this customer (id).",
        error_messages={"invalid_choice": "No customer %(value)s among your tenant's customers."})
    iccid = IccidPrefixFilter(method="iccid_prefix", max_length=22, help_text="ICCIDs starting with these digits.",
                               validators=[RegexValidator(r"^\d*$", "An ICCID is digits only.")])
    sort = filters.ChoiceFilter(choices=SORT_CHOICES, method="sorted_by", help_text="iccid (default), or -saving "
                                                                                   "(largest saving first).")

    class Meta:
        model = DeviceAssignment
        fields = ["group", "changed", "from_plan", "to_plan", "customer", "iccid", "sort"]

    def plan_code(self, queryset, name, value):
        # The plans' ids, not a join on their codes: the (run, current plan, recommended plan) index serves ids.
        return queryset.filter(**{f"{name}__in": list(RatePlan.objects.filter(code=value).values_list("pk", flat=True))})

    def iccid_prefix(self, queryset, name, value):
        return queryset.filter(iccid__startswith=value, **iccid_prefix_range(value))

    def sorted_by(self, queryset, name, value):
        return queryset  # the order is applied after every filter, default included (filter_queryset)

    def filter_queryset(self, queryset):
        return super().filter_queryset(queryset).order_by(*SORTS[self.form.cleaned_data.get("sort") or "iccid"])
