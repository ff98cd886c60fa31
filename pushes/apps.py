from django.apps import AppConfig


class PushesConfig(AppConfig):
    name = "pushes"
    verbose_name = "Rate-plan pushes"
    # Collected by carrieropt's setup_schedules: (name, task, minutes, why).
    schedules = [
        ("carrieropt: resume rate-plan pushes", "pushes.tasks.resume_pushes", 1,
         "re-queue push batches whose worker died and pushes whose next task was lost"),
    ]

    def ready(self):
        from pushes import receivers  # noqa: F401  (auto-apply after a session; no sync while pushing)
