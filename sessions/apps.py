from django.apps import AppConfig


class OptSessionsConfig(AppConfig):
    name = "sessions"
    # "sessions" is django.contrib.sessions' label; ours must never clash with it.
    label = "optsessions"
    verbose_name = "Optimization sessions"

    def ready(self):
        from sessions import receivers  # noqa: F401  (connects the device-sync notice to the outbox)
