"""REST API of the catalogue: carrier accounts (API key write-only), rate plans, communication plans."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response

from carrieropt.api.base import MAX_ID, TenantApi, as_api_validation, scope_field
from carrieropt.models import Tenant
from rateplans import services
from rateplans.models import CommunicationPlan, RatePlan, ServiceProvider
from rateplans.serializers import (
    CommunicationPlanCreateIn,
    CommunicationPlanOut,
    CommunicationPlanUpdateIn,
    ProviderCreateIn,
    ProviderOut,
    ProviderUpdateIn,
    RatePlanCreateIn,
    RatePlanOut,
    RatePlanUpdateIn,
)


class ProviderFilter(serializers.Serializer):
    tenant = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)


class CatalogueFilter(serializers.Serializer):
    provider = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)


def _validated(serializer_class, view, *, instance=None):
    data = serializer_class(instance, data=view.request.data, partial=instance is not None,
                            context=view.get_serializer_context())
    if "tenant" in data.fields:
        scope_field(data, "tenant", Tenant.objects.filter(pk__in=view.tenants))
    if "provider" in data.fields:
        scope_field(data, "provider", ServiceProvider.objects.filter(tenant__in=view.tenants))
    if "rate_plans" in data.fields:
        scope_field(data, "rate_plans", RatePlan.objects.filter(provider__tenant__in=view.tenants))
    data.is_valid(raise_exception=True)
    return data.validated_data


class ProviderListApi(TenantApi, generics.ListAPIView):
    """Carrier accounts of your tenants; POST creates one (the API key is write-only)."""

    serializer_class = ProviderOut

    def get_queryset(self):
        filters = self.query(ProviderFilter)
        qs = ServiceProvider.objects.filter(tenant__in=self.tenants).order_by("pk")
        if "tenant" in filters:
            qs = qs.filter(tenant_id=filters["tenant"])
        return qs

    @extend_schema(parameters=[ProviderFilter])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=ProviderCreateIn, responses={201: ProviderOut})
    def post(self, request):
        data = dict(_validated(ProviderCreateIn, self))
        with as_api_validation():
            provider = services.provider_create(**data)
        return Response(ProviderOut(provider).data, status=status.HTTP_201_CREATED)


class ProviderDetailApi(TenantApi, generics.RetrieveAPIView):
    """One carrier account; PATCH updates it (a blank or absent api_key keeps the stored key)."""

    serializer_class = ProviderOut

    def get_queryset(self):
        return ServiceProvider.objects.filter(tenant__in=self.tenants)

    @extend_schema(request=ProviderUpdateIn, responses={200: ProviderOut})
    def patch(self, request, pk):
        provider = self.get_object()
        data = _validated(ProviderUpdateIn, self, instance=provider)
        with as_api_validation():
            provider = services.provider_update(provider=provider, **data)
        return Response(ProviderOut(provider).data)


class RatePlanListApi(TenantApi, generics.ListAPIView):
    """Rate plans of your carrier accounts; POST adds one."""

    serializer_class = RatePlanOut

    def get_queryset(self):
        filters = self.query(CatalogueFilter)
        qs = RatePlan.objects.filter(provider__tenant__in=self.tenants).order_by("provider_id", "included_mb", "code")
        if "provider" in filters:
            qs = qs.filter(provider_id=filters["provider"])
        return qs

    @extend_schema(parameters=[CatalogueFilter])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=RatePlanCreateIn, responses={201: RatePlanOut})
    def post(self, request):
        data = dict(_validated(RatePlanCreateIn, self))
        with as_api_validation():
            plan = services.rate_plan_create(**data)
        return Response(RatePlanOut(plan).data, status=status.HTTP_201_CREATED)


class RatePlanDetailApi(TenantApi, generics.RetrieveAPIView):
    """One rate plan; PATCH updates it."""

    serializer_class = RatePlanOut

    def get_queryset(self):
        return RatePlan.objects.filter(provider__tenant__in=self.tenants)

    @extend_schema(request=RatePlanUpdateIn, responses={200: RatePlanOut})
    def patch(self, request, pk):
        plan = self.get_object()
        data = _validated(RatePlanUpdateIn, self, instance=plan)
        with as_api_validation():
            plan = services.rate_plan_update(rate_plan=plan, **data)
        return Response(RatePlanOut(plan).data)


class CommunicationPlanListApi(TenantApi, generics.ListAPIView):
    """Communication plans and the rate plans each allows; POST adds one."""

    serializer_class = CommunicationPlanOut

    def get_queryset(self):
        filters = self.query(CatalogueFilter)
        qs = (CommunicationPlan.objects.filter(provider__tenant__in=self.tenants)
              .prefetch_related("rate_plans").order_by("provider_id", "name"))
        if "provider" in filters:
            qs = qs.filter(provider_id=filters["provider"])
        return qs

    @extend_schema(parameters=[CatalogueFilter])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=CommunicationPlanCreateIn, responses={201: CommunicationPlanOut})
    def post(self, request):
        data = dict(_validated(CommunicationPlanCreateIn, self))
        with as_api_validation():
            comm = services.communication_plan_create(**data)
        return Response(CommunicationPlanOut(comm).data, status=status.HTTP_201_CREATED)


class CommunicationPlanDetailApi(TenantApi, generics.RetrieveAPIView):
    """One communication plan; PATCH renames it or replaces its rate plans."""

    serializer_class = CommunicationPlanOut

    def get_queryset(self):
        return CommunicationPlan.objects.filter(provider__tenant__in=self.tenants).prefetch_related("rate_plans")

    @extend_schema(request=CommunicationPlanUpdateIn, responses={200: CommunicationPlanOut})
    def patch(self, request, pk):
        comm = self.get_object()
        data = _validated(CommunicationPlanUpdateIn, self, instance=comm)
        with as_api_validation():
            comm = services.communication_plan_update(communication_plan=comm, **data)
        return Response(CommunicationPlanOut(comm).data)
