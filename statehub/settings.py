"""Django settings for the statehub dashboard, read from environment variables (12-factor).

Every variable and its default is listed in the README's configuration table.
"""

from __future__ import annotations

import warnings
from datetime import timedelta
from pathlib import Path

import dj_database_url

from statehub.env import env_bool, env_int, env_json, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("STATEHUB_DATA_DIR", str(BASE_DIR / "data")))

DEBUG = env_bool("DJANGO_DEBUG", True)
# The development default is deliberately recognisable; production settings refuse it.
DEFAULT_SECRET_KEY = "dev-insecure-statehub-key-change-me"
SECRET_KEY = env_str("DJANGO_SECRET_KEY", DEFAULT_SECRET_KEY)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "axes",
    "persistence",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files whatever DJANGO_DEBUG says (runserver serves them only in debug), found
    # where the apps keep them (WHITENOISE_USE_FINDERS): no collectstatic step to forget.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "persistence.middleware.SecurityHeadersMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "persistence.middleware.HtmxLoginRedirectMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "persistence.middleware.AuditContextMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "statehub.urls"
WSGI_APPLICATION = "statehub.wsgi.application"
ASGI_APPLICATION = "statehub.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            # {% partialdef %} in every template without {% load partials %}.
            "builtins": ["template_partials.templatetags.partials"],
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "persistence.context_processors.roles_context",
            ],
        },
    }
]

DATABASE_URL = env_str("DATABASE_URL", "")
if not DATABASE_URL:
    # SQLite creates its file but not the folder: `manage.py migrate` or a cron job's
    # `purge_expired` may be the first thing ever run here, before `make run`.
    DATA_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL or f"sqlite:///{DATA_DIR / 'dashboard.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# Security: docs/security.md explains every setting of this section.
# Argon2 first: new and changed passwords are hashed with it; older hashes upgrade at login.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
# django-axes must see every authenticate() call, so it comes first.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = env_bool("STATEHUB_LOGIN_THROTTLE", True)
# Failed attempts are counted in Redis when there is one (shared by every process), else in
# Django's database (a local-memory cache would count per process).
AXES_HANDLER = (
    "axes.handlers.cache.AxesCacheHandler"
    if REDIS_URL
    else "axes.handlers.database.AxesDatabaseHandler"
)
AXES_DISABLE_ACCESS_LOG = True  # the audit log records sign-ins (persistence.audit)
AXES_FAILURE_LIMIT = env_int("STATEHUB_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("STATEHUB_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "persistence.audit.client_address"  # the same address as the audit log
AXES_VERBOSE = False
# How many reverse proxies in front of the app append to X-Forwarded-For (0: trust none).
STATEHUB_TRUSTED_PROXIES = env_int("STATEHUB_TRUSTED_PROXIES", 0, minimum=0)

# Sessions end after this many idle seconds: every request moves the expiry forward.
SESSION_COOKIE_AGE = env_int("STATEHUB_SESSION_IDLE_SECONDS", 8 * 3600)
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = env_bool("STATEHUB_SESSION_EXPIRE_AT_BROWSER_CLOSE", False)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# A set-password link (new user, password reset by an admin) is valid this long.
PASSWORD_RESET_TIMEOUT = env_int("STATEHUB_SET_PASSWORD_LINK_SECONDS", 24 * 3600)

X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# The Content-Security-Policy is persistence.conf.DEFAULT_CSP; a STATEHUB_CSP mapping replaces it.

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "persistence:states"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"  # for `collectstatic`, which nothing here needs
WHITENOISE_USE_FINDERS = True
# WhiteNoise warns at every start when STATIC_ROOT does not exist, as it will not until then.
warnings.filterwarnings("ignore", message="No directory at: .*staticfiles")

# The stores the dashboard shows and the workers clean: {"name": "url"} or
# {"name": {"url": "...", "options": {...}}}. Read by persistence.conf only.
STATEHUB_STORES = env_json(
    "STATEHUB_STORES", {"default": f"sqlite:///{DATA_DIR / 'states.sqlite3'}"}
)

# Celery: broker and results from the environment; the embedded default needs no server.
# docs/workers.md explains every setting of this section and the STATEHUB_* cleanup ones below.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(DATA_DIR / "broker"),
        "data_folder_out": str(DATA_DIR / "broker"),
        "processed_folder": str(DATA_DIR / "broker-processed"),
        "control_folder": str(DATA_DIR / "broker-control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem")
    # e.g. '{"visibility_timeout": 3600}' for Redis; must exceed STATEHUB_CLEANUP_LOCK_TIMEOUT.
    else env_json("CELERY_BROKER_TRANSPORT_OPTIONS", {})
)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery gives up on a lost broker after 100 tries (about 46 minutes) and the worker, with the
# beat inside it, exits for good: a broker back after a longer outage would find no cleanup.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", "") or None
CELERY_TASK_IGNORE_RESULT = CELERY_RESULT_BACKEND is None
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # acks_late tasks: hold one message at a time
CELERY_TIMEZONE = TIME_ZONE

# Cleanup workers: intervals (seconds), batch size, a run's time budget (seconds), how long a
# run may go without progress before its lock counts as abandoned, and run-record retention.
STATEHUB_PURGE_INTERVAL = env_int("STATEHUB_PURGE_INTERVAL", 60)
STATEHUB_PRUNE_INTERVAL = env_int("STATEHUB_PRUNE_INTERVAL", 3600)
STATEHUB_CLEANUP_BATCH_SIZE = env_int("STATEHUB_CLEANUP_BATCH_SIZE", 1000)
STATEHUB_CLEANUP_TIME_LIMIT = env_int("STATEHUB_CLEANUP_TIME_LIMIT", 30)
STATEHUB_CLEANUP_LOCK_TIMEOUT = env_int("STATEHUB_CLEANUP_LOCK_TIMEOUT", 60)
STATEHUB_RUN_RETENTION_DAYS = env_int("STATEHUB_RUN_RETENTION_DAYS", 30)
CELERY_BEAT_SCHEDULE = {
    f"statehub-{task}": {
        "task": "persistence.cleanup_all_stores",
        "schedule": float(interval),
        "kwargs": {"task": task},
        # A missed tick is not worth replaying: the next one does the same work.
        "options": {"expires": float(interval)},
    }
    for task, interval in (
        ("purge_expired", STATEHUB_PURGE_INTERVAL),
        ("prune_versions", STATEHUB_PRUNE_INTERVAL),
    )
}

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()  # also the level of the worker `make run` starts
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
}
