"""Create or update the django-q2 schedules carrieropt relies on. Safe to run any number of times."""
from django.core.management.base import BaseCommand
from django_q.models import Schedule

SCHEDULES = [
    # (name, task, minutes, why)
    ("carrieropt: optimization window check", "sessions.tasks.window_check", 60,
     "start sessions inside each account's optimization window"),
    ("carrieropt: watchdog", "sessions.tasks.watchdog_run", 1,
     "re-queue expired work, fail sessions past their deadline"),
    ("carrieropt: deliver AMOP events", "sessions.tasks.deliver_events", 1,
     "retry webhook deliveries that are due"),
]


class Command(BaseCommand):
    help = "Create the hourly window check, the watchdog and the webhook retry schedules (idempotent)."

    def handle(self, *args, **options):
        for name, func, minutes, why in SCHEDULES:
            _, created = Schedule.objects.update_or_create(
                name=name, defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": minutes, "repeats": -1},
            )
            self.stdout.write(f"{'created' if created else 'updated'}: {name} every {minutes} min ({why})")
