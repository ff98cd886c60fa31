from django.apps import AppConfig


class CarrieroptConfig(AppConfig):
    name = "carrieropt"
    verbose_name = "carrieropt"

    def ready(self):
        from carrieropt import checks  # noqa: F401  (registers system checks)
