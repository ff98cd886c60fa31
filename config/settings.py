"""The one settings file: every value that differs between machines comes from the environment."""
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from carrieropt.env import database_from_url, envbool, envfloat, envint, envstr

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(envstr("CARRIEROPT_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = envbool("DEBUG", False)
# Without DEBUG a real key must come from the environment; the check in
# carrieropt.checks reports it as an error instead of crashing at import.
SECRET_KEY = envstr("SECRET_KEY") or ("insecure-dev-key-only-for-debug" if DEBUG else "")
# Carrier API keys are encrypted at rest with these Fernet keys (carrieropt.crypto), comma-separated: the
# first encrypts, every one decrypts. Required without DEBUG (check carrieropt.E101); with DEBUG a key
# derived from SECRET_KEY is added last, for development only.
FIELD_ENCRYPTION_KEYS = [k.strip() for k in envstr("FIELD_ENCRYPTION_KEYS").split(",") if k.strip()]
# Not read from the environment: the development key exists exactly when this process started with DEBUG.
FIELD_ENCRYPTION_DEVELOPMENT_KEY = DEBUG
ALLOWED_HOSTS = [h for h in envstr("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in envstr("CSRF_TRUSTED_ORIGINS", "").split(",") if o]
SITE_URL = envstr("SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "carrieropt",
    "rateplans",
    "carriers",
    "devices",
    "optimizer",
    "sessions.apps.OptSessionsConfig",
    "pushes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = envstr("DATABASE_URL", f"sqlite:///{VAR_DIR / 'carrieropt.sqlite3'}")
DATABASES = {"default": database_from_url(DATABASE_URL)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Workers and the web process share one file: WAL lets readers run during a
    # write, IMMEDIATE avoids the upgrade deadlock of deferred transactions.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_ROOT = Path(envstr("MEDIA_ROOT", str(VAR_DIR / "media")))
# Session reports go through Django's storage API (STORAGES["reports"]): files under MEDIA_ROOT/reports by
# default; an S3-compatible bucket (django-storages) when REPORTS_S3_BUCKET is set, so web and workers on
# different machines serve the same reports. Without an access key, boto3 finds credentials its own way.
REPORTS_S3_BUCKET = envstr("REPORTS_S3_BUCKET")
REPORTS_S3_ENDPOINT_URL = envstr("REPORTS_S3_ENDPOINT_URL")
REPORTS_S3_REGION = envstr("REPORTS_S3_REGION")
REPORTS_S3_ACCESS_KEY_ID = envstr("REPORTS_S3_ACCESS_KEY_ID")
REPORTS_S3_SECRET_ACCESS_KEY = envstr("REPORTS_S3_SECRET_ACCESS_KEY")
REPORTS_S3_PREFIX = envstr("REPORTS_S3_PREFIX", "reports")
if REPORTS_S3_BUCKET:
    _reports_storage = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        "bucket_name": REPORTS_S3_BUCKET, "endpoint_url": REPORTS_S3_ENDPOINT_URL or None,
        "region_name": REPORTS_S3_REGION or None, "access_key": REPORTS_S3_ACCESS_KEY_ID or None,
        "secret_key": REPORTS_S3_SECRET_ACCESS_KEY or None, "location": REPORTS_S3_PREFIX,
        "file_overwrite": True, "default_acl": None, "querystring_auth": True,
    }}
else:
    _reports_storage = {"BACKEND": "carrieropt.storage.AtomicFileSystemStorage",
                       "OPTIONS": {"location": MEDIA_ROOT / "reports"}}
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "reports": _reports_storage,
}

# Security: strict by default outside DEBUG so `check --deploy` is clean in production.
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if envbool("BEHIND_PROXY", False) else None

EMAIL_BACKEND = envstr("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = envstr("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = envstr("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "carrieropt <noreply@localhost>")
OPS_EMAILS = [e.strip() for e in envstr("OPS_EMAILS", "").split(",") if e.strip()]
# A report larger than this is not attached to its e-mail (mail servers refuse messages of 10-35 MB, and base64
# makes an attachment a third larger): the e-mail links to the session instead.
REPORT_EMAIL_ATTACH_MAX_MB = envfloat("REPORT_EMAIL_ATTACH_MAX_MB", 10.0, minimum=0.0)
# An alert raised again with the same incident key within this many minutes is counted, not mailed again.
ALERT_DEDUP_MINUTES = envint("ALERT_DEDUP_MINUTES", 60, minimum=0)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 100,
    "COERCE_DECIMAL_TO_STRING": True,
    "EXCEPTION_HANDLER": "carrieropt.errors.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "carrieropt API",
    "DESCRIPTION": "SIM rate-plan optimization for AMOP 2.0 and operators.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The docs page works offline and behind strict egress rules.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # <id:pk> in config/api_urls.py: a row id, 1 .. 2**63-1.
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}},
    # One name for each choice set, whichever field carries it (a session's method, an account's default_method).
    "ENUM_NAME_OVERRIDES": {"MethodEnum": "carrieropt.options.Method", "ChargeTypeEnum": "carrieropt.options.ChargeType",
                            # An account's integration as stored, and the ones it may be given (input).
                            "IntegrationEnum": "rateplans.models.Integration",
                            "SyncableIntegrationEnum": "rateplans.models.SYNCABLE_INTEGRATION_CHOICES",
                            # A session's status, in its own row and in a cross-provider session's accounts.
                            "SessionStatusEnum": "sessions.models.SessionStatus",
                            "SessionScopeEnum": "sessions.models.Scope"},
}

# Background jobs. ORM broker by default (works on SQLite, one machine); Redis
# when REDIS_URL is set. timeout < retry so a slow task is killed before the
# broker redelivers it; a redelivered task is harmless anyway (claims are CAS).
Q_TIMEOUT = envint("Q_TIMEOUT", 600, minimum=10)
Q_CLUSTER = {
    "name": "carrieropt",
    "workers": envint("Q_WORKERS", 2, minimum=1),
    "recycle": 200,
    "timeout": Q_TIMEOUT,
    "retry": Q_TIMEOUT + 120,
    "max_attempts": envint("Q_MAX_ATTEMPTS", 3, minimum=1),
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 1000,
    "queue_limit": 50,
    "poll": 0.2,
    "compress": False,
    "sync": envbool("Q_SYNC", False),
    "label": "Background tasks",
}
REDIS_URL = envstr("REDIS_URL")
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
    # The clusters' status in the database, so any process can tell whether one is alive (carrieropt.workers).
    Q_CLUSTER["broker_class"] = "carrieropt.broker.OrmBroker"

# Optimization
OPTIMIZATION_WINDOW_DAYS = envint("OPTIMIZATION_WINDOW_DAYS", 8, minimum=1)
LEGACY_MAX_PLANS = envint("LEGACY_MAX_PLANS", 15, minimum=1)
CERTIFIED_MAX_PLANS = envint("CERTIFIED_MAX_PLANS", 200, minimum=1)
LEGACY_MAX_SEQUENCES = envint("LEGACY_MAX_SEQUENCES", 1000, minimum=1)
LEGACY_SEQUENCES_PER_ITEM = envint("LEGACY_SEQUENCES_PER_ITEM", 100, minimum=1)
# Cross-provider optimizations (a customer's SIMs on each of the tenant's accounts) for tenants that do not say
# (Tenant.cross_provider empty); legacy ENABLE_CROSS_PROVIDER.
ENABLE_CROSS_PROVIDER = envbool("ENABLE_CROSS_PROVIDER", False)
SESSION_DEADLINE_MINUTES = envint("SESSION_DEADLINE_MINUTES", 180, minimum=1)
WORK_LEASE_SECONDS = envint("WORK_LEASE_SECONDS", Q_TIMEOUT + 60, minimum=1)
# The sync stage talks to the carrier at its rate limit: hours for a large fleet.
SYNC_STAGE_TIMEOUT = envint("SYNC_STAGE_TIMEOUT", 12 * 3600, minimum=60)
STAGE_HEARTBEAT_SECONDS = envint("STAGE_HEARTBEAT_SECONDS", 30, minimum=1)
STAGE_STALL_SECONDS = envint("STAGE_STALL_SECONDS", Q_TIMEOUT + 180, minimum=10)

# AMOP 2.0 webhooks
AMOP_WEBHOOK_URL = envstr("AMOP_WEBHOOK_URL")
AMOP_WEBHOOK_SECRET = envstr("AMOP_WEBHOOK_SECRET")
AMOP_WEBHOOK_TIMEOUT = envint("AMOP_WEBHOOK_TIMEOUT", 10, minimum=1)
AMOP_WEBHOOK_BACKOFF_BASE = envint("AMOP_WEBHOOK_BACKOFF_BASE", 2, minimum=0)
AMOP_WEBHOOK_BACKOFF_CAP = envint("AMOP_WEBHOOK_BACKOFF_CAP", 300, minimum=1)
# After this many failed attempts an event is dead-lettered (alerted, skipped so the stream goes on).
AMOP_WEBHOOK_MAX_ATTEMPTS = envint("AMOP_WEBHOOK_MAX_ATTEMPTS", 10, minimum=1)
# Sent as "Authorization: Bearer <key>" with every webhook (AMOP 2.0 authenticates with it), beside the HMAC signature.
AMOP_API_KEY = envstr("AMOP_API_KEY")

# Prometheus: /metrics is served only when a token is set, and only to "Authorization: Bearer <token>".
METRICS_TOKEN = envstr("METRICS_TOKEN")

# Pushing recommended rate plans to the carrier (legacy rules: batches of 250, 60 SIMs/min
# until a rate is measured, go only with 10 minutes to spare before the period ends).
# A push stores the tuning it was created with (RatePlanPush.tuning): every worker of it agrees.
PUSH_BATCH_SIZE = envint("PUSH_BATCH_SIZE", 250, minimum=1)
PUSH_DEFAULT_RATE_PER_MINUTE = envint("PUSH_DEFAULT_RATE_PER_MINUTE", 60, minimum=1)
PUSH_RATE_MIN_SAMPLE = envint("PUSH_RATE_MIN_SAMPLE", 50, minimum=1)
PUSH_MIN_SLACK_MINUTES = envint("PUSH_MIN_SLACK_MINUTES", 10, minimum=0)
PUSH_CALL_TIMEOUT = envfloat("PUSH_CALL_TIMEOUT", 30.0, minimum=0.01)
PUSH_READ_ATTEMPTS = envint("PUSH_READ_ATTEMPTS", 5, minimum=1)
PUSH_SEND_ATTEMPTS = envint("PUSH_SEND_ATTEMPTS", 8, minimum=1)
PUSH_BACKOFF_BASE = envfloat("PUSH_BACKOFF_BASE", 0.5, minimum=0)
PUSH_BACKOFF_CAP = envfloat("PUSH_BACKOFF_CAP", 30.0, minimum=0)
PUSH_RESEND_MARGIN_SECONDS = envfloat("PUSH_RESEND_MARGIN_SECONDS", 15.0, minimum=0)
PUSH_LEASE_SECONDS = envfloat("PUSH_LEASE_SECONDS", 120.0, minimum=1)
PUSH_VERIFY_DELAY_SECONDS = envfloat("PUSH_VERIFY_DELAY_SECONDS", 30.0, minimum=0)
# A batch task gives its batch back after this long, well inside django-q2's timeout.
PUSH_RUN_SECONDS = envfloat("PUSH_RUN_SECONDS", 0.8 * Q_TIMEOUT, minimum=1)
PUSH_MAX_BATCH_CLAIMS = envint("PUSH_MAX_BATCH_CLAIMS", 10, minimum=1)

# Carrier simulator used by the demo
SIMULATOR_URL = envstr("SIMULATOR_URL", "http://127.0.0.1:8765")
# The demo's second carrier account (cross-provider optimization) talks to a second simulator here.
SIMULATOR_SECOND_URL = envstr("SIMULATOR_SECOND_URL", "http://127.0.0.1:8766")

# Device sync: a full sync (which also marks SIMs the carrier no longer lists) at least this often.
DEVICE_FULL_SYNC_DAYS = envint("DEVICE_FULL_SYNC_DAYS", 7, minimum=1)
# The device list does not name a SIM's customer: a sync reads Get Device Details (one call per SIM) for at most
# this many new or changed SIMs; the rest are read by the next syncs. 0: customers are not synced.
DEVICE_SYNC_CUSTOMER_READS = envint("DEVICE_SYNC_CUSTOMER_READS", 5000, minimum=0)
# Usage coverage: a session prices a SIM only with usage of the current cycle stored by a sync no older
# than this (a sync of the session itself always is); below MIN_USAGE_COVERAGE of the billable SIMs
# covered, the session ends "succeeded with warnings" and is never applied automatically.
USAGE_MAX_AGE_HOURS = envfloat("USAGE_MAX_AGE_HOURS", 24.0, minimum=0)
MIN_USAGE_COVERAGE = envfloat("MIN_USAGE_COVERAGE", 0.99, minimum=0)
# Change budgets of the savings-versus-changes frontier each session computes (0 .. the unconstrained answer's changes).
FRONTIER_POINTS = envint("FRONTIER_POINTS", 20, minimum=2)
# From this many SIMs, a session's finalize computes the frontier in a second (forked) process while the worker builds
# and writes the SIMs' rows. Below it (or without fork), the worker computes it itself.
FINALIZE_FORK_MIN_SIMS = envint("FINALIZE_FORK_MIN_SIMS", 50_000, minimum=0)
# A finalize's child process that has not reported within this many seconds is killed, and its work done by the
# worker itself (at 1M SIMs the child needs 12-16 s).
FINALIZE_CHILD_TIMEOUT_SECONDS = envfloat("FINALIZE_CHILD_TIMEOUT_SECONDS", 300.0, minimum=0.1)
if MIN_USAGE_COVERAGE > 1:
    raise ImproperlyConfigured(f"MIN_USAGE_COVERAGE={MIN_USAGE_COVERAGE:g} is a share of SIMs: at most 1")
# A SIM whose usage call failed is asked again this many more times within the same usage sync.
USAGE_RETRY_ROUNDS = envint("USAGE_RETRY_ROUNDS", 2, minimum=0)
# The daily background sync: every hour, each active account whose usage was last synced longer ago than
# this is synced (devices, then the usage older than this), so a session in the window only tops up. 0: off.
BACKGROUND_SYNC_HOURS = envfloat("BACKGROUND_SYNC_HOURS", 24.0, minimum=0)
# Hours after a billing cycle ends before the scheduled check reads its final usage (the carrier rates late
# records); the realized savings of the cycle's sessions are computed from it.
FINAL_USAGE_DELAY_HOURS = envfloat("FINAL_USAGE_DELAY_HOURS", 24.0, minimum=0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "django_q": {"level": envstr("Q_LOG_LEVEL", "WARNING")}},
}
