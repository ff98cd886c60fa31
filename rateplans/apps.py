from django.apps import AppConfig


class RateplansConfig(AppConfig):
    name = "rateplans"
    verbose_name = "Rate plans and carrier accounts"
