"""Print what the demo created and where to look; gives the demo operator a login."""
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db.models import Count
from rest_framework.authtoken.models import Token

from carrieropt.models import Tenant
from devices.demo import DEMO_PROVIDER
from devices.models import Device, DeviceUsage
from optimizer.models import DeviceAssignment, KeptReason
from rateplans.models import CommunicationPlan, RatePlan, ServiceProvider
from sessions.management.commands.optimize import comparison_text
from sessions.models import OptimizationSession, Scope


class Command(BaseCommand):
    help = "Summarise the demo data and print how to open the admin."

    def handle(self, *args, **options):
        provider = ServiceProvider.objects.select_related("tenant").filter(name=DEMO_PROVIDER).first()
        if provider is None:
            self.stderr.write("No demo data: run `manage.py seed_demo` first.")
            return
        # A fresh random password each run: nothing secret is stored in the repository.
        password = secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(username="demo", defaults={"email": "demo@localhost"})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        provider.tenant.users.add(user)
        token, _ = Token.objects.get_or_create(user=user)
        last = OptimizationSession.objects.filter(provider=provider, scope=Scope.CARRIER).first()
        cross = (OptimizationSession.objects.filter(tenant=provider.tenant, scope=Scope.CROSS_PROVIDER, parent=None)
                 .select_related("customer").first())

        w = self.stdout.write
        w("")
        w(self.style.MIGRATE_HEADING("carrieropt demo"))
        w(f"  tenants            {Tenant.objects.count()}")
        w(f"  carrier accounts   {ServiceProvider.objects.count()}  (demo: #{provider.pk} {provider.name}, {provider.integration}, {provider.api_base_url})")
        w(f"  rate plans         {RatePlan.objects.filter(provider=provider).count()}")
        w(f"  communication plans {CommunicationPlan.objects.filter(provider=provider).count()}")
        w(f"  SIMs               {Device.objects.filter(provider=provider).count():,}")
        w(f"  usage rows         {DeviceUsage.objects.filter(device__provider=provider).count():,}")
        w(f"  sessions           {OptimizationSession.objects.filter(provider=provider).count()}")
        if last is not None:
            w(f"  last session       {last.guid} {last.status}, report: {last.report_path or '-'}")
            if last.is_complete:
                kept = dict(DeviceAssignment.objects.filter(run=last.run).exclude(kept_reason="").order_by()
                            .values_list("kept_reason").annotate(n=Count("pk")))
                savings = last.savings
                w(f"  savings            {savings:,.2f} of {last.current_cost:,.2f}" if savings is not None
                  and last.current_cost else "  savings            -")
                w(f"  SIMs priced        {last.device_count:,}: {last.sims_with_usage:,} with usage, "
                  f"{last.no_usage_count:,} without usage data (kept on their plan), "
                  f"{kept.get(KeptReason.PINNED, 0):,} pinned, "
                  f"{kept.get(KeptReason.STOPPED, 0):,} deactivated this cycle (kept)")
                w(f"  changes            {DeviceAssignment.objects.filter(run=last.run, changed=True).count():,}")
                if last.warnings:
                    w(self.style.WARNING(f"  warning            {last.warnings}"))
        if cross is not None:
            w(f"  cross-provider     {cross.guid} {cross.status}, report: {cross.report_path or '-'}")
            if cross.comparison:
                w("\n".join(f"  {line}" for line in comparison_text(cross).splitlines()))
            elif cross.error:
                w(self.style.WARNING(f"  error              {cross.error}"))
        w("")
        w("Where to look (start the web server first with `make run`; `make worker` runs background jobs):")
        w("  dashboard   http://127.0.0.1:8000/              user: demo  password: " + password)
        w("  admin       http://127.0.0.1:8000/admin/")
        w("  API docs    http://127.0.0.1:8000/api/docs/")
        w(f"  API         curl -H 'Authorization: Token {token.key}' http://127.0.0.1:8000/api/sessions/")
