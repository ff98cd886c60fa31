from django.apps import AppConfig


class CarriersConfig(AppConfig):
    """No models: installed for its `run_carrier_simulator` command only."""

    name = "carriers"
    verbose_name = "Carrier API"
