from django.apps import AppConfig


class RateplansConfig(AppConfig):
    name = "rateplans"
    verbose_name = "Rate plans and carrier accounts"

    def ready(self):
        from rateplans import checks  # noqa: F401  (registers system checks)
