from django.apps import AppConfig


class DevicesConfig(AppConfig):
    name = "devices"
    verbose_name = "SIMs and carrier sync"
    # Collected by carrieropt's setup_schedules: (name, task, minutes, why).
    schedules = [
        ("carrieropt: background sync", "devices.tasks.background_syncs", 60,
         "sync each account whose usage is older than BACKGROUND_SYNC_HOURS, so sessions only top up"),
    ]
