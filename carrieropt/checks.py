"""System checks: settings mistakes are reported by `manage.py check`, not at request time."""
from django.conf import settings
from django.core.checks import Error, register
from django.core.checks import Warning as CheckWarning
from django.core.exceptions import ImproperlyConfigured


@register()
def settings_check(app_configs, **kwargs):
    problems = []
    try:
        secret_key = settings.SECRET_KEY
    except ImproperlyConfigured:  # Django refuses to hand out an empty key
        secret_key = ""
    if not settings.DEBUG and not secret_key:
        problems.append(Error("SECRET_KEY is empty while DEBUG is off.", hint="Set SECRET_KEY in the environment.", id="carrieropt.E001"))
    q = settings.Q_CLUSTER
    if q["timeout"] >= q["retry"]:
        problems.append(Error(f"Q_CLUSTER timeout ({q['timeout']}) must be below retry ({q['retry']}).", id="carrieropt.E002"))
    if not q.get("max_attempts"):
        problems.append(Error("Q_CLUSTER max_attempts must be finite (>= 1).", id="carrieropt.E003"))
    if settings.AMOP_WEBHOOK_URL and not settings.AMOP_WEBHOOK_SECRET:
        problems.append(Error("AMOP_WEBHOOK_URL is set but AMOP_WEBHOOK_SECRET is empty: webhooks would be unsigned.", id="carrieropt.E004"))
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3") and q["workers"] > 1 and not settings.DEBUG and not settings.Q_CLUSTER.get("redis"):
        problems.append(CheckWarning("SQLite with several workers serialises writes; use PostgreSQL (DATABASE_URL) for production.", id="carrieropt.W001"))
    return problems


@register()
def encryption_keys_check(app_configs, **kwargs):
    """FIELD_ENCRYPTION_KEYS: present without DEBUG, and every entry a Fernet key (never quoted back)."""
    from carrieropt import crypto

    return [Error(text, hint="Set FIELD_ENCRYPTION_KEYS in the environment (comma-separated; the first encrypts).",
                  id="carrieropt.E101") for text in crypto.problems()]


@register()
def reports_storage_check(app_configs, **kwargs):
    """REPORTS_S3_*: a bucket for the other settings to apply to, both halves of an access key, the library."""
    problems = []
    given = [name for name in ("REPORTS_S3_ENDPOINT_URL", "REPORTS_S3_REGION", "REPORTS_S3_ACCESS_KEY_ID",
                               "REPORTS_S3_SECRET_ACCESS_KEY") if getattr(settings, name)]
    if given and not settings.REPORTS_S3_BUCKET:
        problems.append(Error(f"{', '.join(given)} set but REPORTS_S3_BUCKET is empty: reports would be written "
                              f"to local disk (MEDIA_ROOT), not to object storage.",
                              hint="Set REPORTS_S3_BUCKET, or unset the other REPORTS_S3_* settings.", id="carrieropt.E111"))
    if bool(settings.REPORTS_S3_ACCESS_KEY_ID) != bool(settings.REPORTS_S3_SECRET_ACCESS_KEY):
        problems.append(Error("REPORTS_S3_ACCESS_KEY_ID and REPORTS_S3_SECRET_ACCESS_KEY go together: one is set, "
                              "the other is empty.", id="carrieropt.E112"))
    if settings.REPORTS_S3_BUCKET:
        try:
            import storages.backends.s3  # noqa: F401
        except ImportError as exc:
            problems.append(Error(f"REPORTS_S3_BUCKET is set but django-storages' S3 backend cannot be imported ({exc}).",
                                  hint="pip install -r requirements.txt (django-storages[s3], boto3)", id="carrieropt.E113"))
    return problems
