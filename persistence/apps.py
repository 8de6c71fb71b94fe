"""The Django app that hosts the dashboard, the workers and their records."""

from django.apps import AppConfig


class PersistenceConfig(AppConfig):
    name = "persistence"
    verbose_name = "statehub"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from persistence import audit, conf, tokens

        # Checked at start, not first when a request is audited, after its action was done.
        conf.trusted_proxies()
        conf.connect_signals()
        audit.connect_signals()
        tokens.connect_signals()
