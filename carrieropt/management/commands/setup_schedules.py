"""Create or update the django-q2 schedules of every installed app. Safe to run any number of times.

An app declares its schedules on its AppConfig as `schedules = [(name, task, minutes, why), ...]`;
the ground floor collects them without importing any app above it.
"""
from django.apps import apps
from django.core.management.base import BaseCommand
from django_q.models import Schedule


def declared_schedules() -> list[tuple[str, str, int, str]]:
    return [entry for config in apps.get_app_configs() for entry in getattr(config, "schedules", ())]


class Command(BaseCommand):
    help = ("Create or update the django-q2 schedules the installed apps declare (window check, watchdog, "
            "webhook retries, rate-plan push resume); idempotent.")

    def handle(self, *args, **options):
        for name, func, minutes, why in declared_schedules():
            _, created = Schedule.objects.update_or_create(
                name=name, defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": minutes, "repeats": -1},
            )
            self.stdout.write(f"{'created' if created else 'updated'}: {name} every {minutes} min ({why})")
