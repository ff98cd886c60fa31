from django.apps import AppConfig


class OptimizerConfig(AppConfig):
    name = "optimizer"
    verbose_name = "Optimizer results"

    def ready(self):
        from optimizer import receivers  # noqa: F401  (realized savings after a final usage sync)
