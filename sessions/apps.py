from django.apps import AppConfig


class OptSessionsConfig(AppConfig):
    name = "sessions"
    # "sessions" is django.contrib.sessions' label; ours must never clash with it.
    label = "optsessions"
    verbose_name = "Optimization sessions"
    # Collected by carrieropt's setup_schedules: (name, task, minutes, why).
    schedules = [
        ("carrieropt: optimization window check", "sessions.tasks.window_check", 60,
         "start sessions inside each account's optimization window"),
        ("carrieropt: watchdog", "sessions.tasks.watchdog_run", 1,
         "re-queue expired work, fail sessions past their deadline"),
        ("carrieropt: deliver AMOP events", "sessions.tasks.deliver_events", 1,
         "retry webhook deliveries that are due"),
        ("carrieropt: final usage of ended cycles", "sessions.tasks.final_usage_check", 60,
         "read the final usage of each account's last ended cycle (FINAL_USAGE_DELAY_HOURS after its end) and "
         "compute the realized savings of its sessions"),
    ]

    def ready(self):
        from sessions import receivers  # noqa: F401  (connects the device-sync notice to the outbox)
