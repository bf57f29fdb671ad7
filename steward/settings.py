"""Steward settings: one module, configured from the environment (12-factor).

With nothing set, Steward runs on SQLite and the kombu filesystem transport under ``var/`` so
that a machine with only Python runs the whole product, workers included. ``DATABASE_URL`` and
``CELERY_BROKER_URL`` switch to PostgreSQL and Redis.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import secrets
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlparse

from whitenoise.compress import Compressor

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def database_from_url(url: str) -> dict:
    """Turn ``postgres://user:pass@host:port/name`` or ``sqlite:///path`` into a DATABASES entry."""
    parsed = urlparse(url)
    options = dict(parse_qsl(parsed.query))
    if parsed.scheme in {"postgres", "postgresql", "pgsql"}:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")) or "postgres",
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            "CONN_MAX_AGE": env_int("STEWARD_DB_CONN_MAX_AGE", 60),
            "CONN_HEALTH_CHECKS": True,
            # A database that does not answer is an error within seconds (503), not a hung request.
            "OPTIONS": {"connect_timeout": env_int("STEWARD_DB_CONNECT_TIMEOUT", 5), **options},
        }
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path)
        # sqlite:////abs/path is absolute, sqlite:///rel/path is relative to the working directory.
        path = path[1:] if path.startswith("/") else path
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": path or str(VAR_DIR / "steward.sqlite3")}
    raise ValueError(f"DATABASE_URL: unsupported scheme {parsed.scheme!r} (use postgres:// or sqlite:///)")


VAR_DIR = Path(env_str("STEWARD_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _persisted_secret(filename: str, make=lambda: secrets.token_urlsafe(50)) -> str:
    """A random secret kept under var/ so that restarts keep sessions valid on the demo set-up."""
    path = VAR_DIR / filename
    if not path.exists():
        # Several processes may start at once (the test workers, web and worker of `make run`): each
        # writes a draft of its own and links it into place; the first link wins and every process
        # reads the one that won.
        draft = VAR_DIR / f".{filename}.{os.getpid()}"
        draft.write_text(make())
        draft.chmod(0o600)
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


SECRET_KEY = env_str("STEWARD_SECRET_KEY") or _persisted_secret("secret_key")
DEBUG = env_bool("STEWARD_DEBUG", False)
ALLOWED_HOSTS = env_list("STEWARD_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("STEWARD_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "simple_history",
    "django_htmx",
    "axes",
    "steward",
    "registry",
    "compliance",
    "portfolio",
    "audits",
    "notifications",
    "demo",
]

MIDDLEWARE = [
    "steward.middleware.RequestIdMiddleware",
    "steward.middleware.NulCharacterMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "steward.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After authentication (anonymous requests get the smallest limit), before anything reads a body.
    "steward.middleware.BodySizeMiddleware",
    "steward.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "steward.middleware.HtmxVaryMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    # Last: turns a lockout during sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "hub.urls"
WSGI_APPLICATION = "steward.wsgi.application"

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
                "steward.roles.role_context",
            ],
        },
    },
]

DATABASES = {"default": database_from_url(env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'steward.sqlite3'}"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": env_int("STEWARD_PASSWORD_MIN_LENGTH", 12)},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    # First, so that a locked-out account or address is refused before its password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Failed sign-ins: after STEWARD_SIGNIN_FAILURE_LIMIT failures for one account, or from one address,
# that account or address is locked out for STEWARD_SIGNIN_LOCKOUT_MINUTES (an officer can unlock it
# sooner on the Sign-in lockouts page). A successful sign-in clears the account's count.
AXES_FAILURE_LIMIT = env_int("STEWARD_SIGNIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = dt.timedelta(minutes=env_int("STEWARD_SIGNIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False
# Behind a TLS proxy the client's address is the proxy's last X-Forwarded-For hop.
if env_bool("STEWARD_BEHIND_TLS_PROXY", False):
    AXES_IPWARE_PROXY_COUNT = env_int("STEWARD_PROXY_COUNT", 1)
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "steward.storage.PlotlyFinder",
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "steward.storage.StaticStorage"},
}
WHITENOISE_USE_FINDERS = True
# collectstatic keeps only the fingerprinted copies (and their gzip and Brotli copies); a name
# without its hash is served from the source directories.
WHITENOISE_KEEP_ONLY_HASHED_FILES = True
# Source maps are for a developer's tools, not for every page: not worth compressing at build time.
WHITENOISE_SKIP_COMPRESS_EXTENSIONS = [*Compressor.SKIP_COMPRESS_EXTENSIONS, "map"]
MEDIA_ROOT = VAR_DIR / "media"
MEDIA_URL = "media/"

# --- Security headers -------------------------------------------------------------------------
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = env_bool("STEWARD_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = env_int("STEWARD_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("STEWARD_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_SSL_REDIRECT = env_bool("STEWARD_SSL_REDIRECT", False)
if env_bool("STEWARD_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Only our own origin; no inline script. Inline styles stay allowed because plotly.js sizes
# its SVG with style attributes.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)

# --- Cache (router token cache, last-seen counters use it later) ------------------------------
REDIS_URL = env_str("STEWARD_REDIS_URL") or (
    env_str("CELERY_BROKER_URL") if env_str("CELERY_BROKER_URL").startswith("redis") else ""
)
# A cache that does not answer costs a request at most this long; the feed then reads the database.
STEWARD_CACHE_TIMEOUT_SECONDS = float(env_str("STEWARD_CACHE_TIMEOUT_SECONDS", "0.5"))
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "socket_connect_timeout": STEWARD_CACHE_TIMEOUT_SECONDS,
                "socket_timeout": STEWARD_CACHE_TIMEOUT_SECONDS,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery -----------------------------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem"):
    for sub in ("queue", "processed", "results", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
        "control_folder": str(BROKER_DIR / "control"),
    }
    CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", f"file://{BROKER_DIR / 'results'}")
else:
    # A broker that does not answer is an error within a second, not a request held for many.
    CELERY_BROKER_TRANSPORT_OPTIONS = (
        {"socket_connect_timeout": env_int("STEWARD_BROKER_CONNECT_TIMEOUT", 1)}
        if CELERY_BROKER_URL.startswith("redis")
        else {}
    )
    CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", CELERY_BROKER_URL)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# How often the audit trail is checkpointed: events deleted from the tail within one interval
# (after one checkpoint, before the next) are not caught by checkpoints (docs/operations.md).
STEWARD_AUDIT_CHECKPOINT_SECONDS = env_int("STEWARD_AUDIT_CHECKPOINT_SECONDS", 600)
CELERY_BEAT_SCHEDULE: dict = {
    "compliance-alerts": {"task": "compliance.record_alerts", "schedule": 24 * 3600},
    "resign-policies": {"task": "portfolio.resign_due", "schedule": 3600},
    "finish-policy-rotation": {"task": "portfolio.finish_policy_rotation", "schedule": 600},
    # Seven days after publishing, a change request's actual figures beside its impact preview.
    "impact-outcomes": {"task": "portfolio.record_impact_outcomes", "schedule": 3600},
    "escalation-rates": {"task": "audits.check_escalation_rates", "schedule": 900},
    "decision-retention": {"task": "audits.remove_expired_content", "schedule": 24 * 3600},
    "decision-partitions": {"task": "audits.create_partitions", "schedule": 24 * 3600},
    "evaluation-schedule": {"task": "registry.dispatch_due_runs", "schedule": 60},
    "evaluation-watchdog": {"task": "registry.watchdog", "schedule": 60},
    # Signed checkpoints of the audit trail (and one at every publish); then an incremental
    # verification from the last verified checkpoint, and a full walk of the chain nightly.
    "audit-checkpoint": {"task": "audits.make_checkpoint", "schedule": STEWARD_AUDIT_CHECKPOINT_SECONDS},
    "audit-verify": {"task": "audits.verify_recent", "schedule": STEWARD_AUDIT_CHECKPOINT_SECONDS},
    "audit-verify-full": {"task": "audits.verify_full", "schedule": 24 * 3600},
    # Violations, policies close to expiry and routers in trouble; then the daily digests.
    "notifications-sweep": {"task": "notifications.sweep", "schedule": 300},
    "notifications-digest": {"task": "notifications.send_digests", "schedule": 24 * 3600},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Bearer first so that an anonymous request is answered 401 with a WWW-Authenticate header.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "steward.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["steward.roles.ReadForStaffRoles"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "steward.paging.ApiPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "steward.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # An Accept header no renderer satisfies gets JSON, not 406 (steward/negotiation.py).
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "steward.negotiation.DefaultWhenNotAcceptable",
    "DEFAULT_PARSER_CLASSES": ["steward.parsers.JSONParser"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Steward API",
    "DESCRIPTION": "Model registry, compliance matrix, routing policies and the signed policy feed.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Requests and responses are described apart (read-only and write-only fields differ).
    "COMPONENT_SPLIT_REQUEST": True,
    # The router protocol (plain Django views) and the error answers of every operation.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "hub.schema.complete_schema"],
    # One name per set of choices where several fields share it.
    "ENUM_NAME_OVERRIDES": {
        "ModelVersionStatusEnum": "registry.models.Status",
        "RunStatusEnum": "registry.models.RunStatus",
        "SuiteCategoryEnum": "registry.models.SuiteCategory",
        "ChangeRequestStatusEnum": "portfolio.models.ChangeStatus",
        "ReviewDecisionEnum": "portfolio.models.ReviewDecision",
        "CellDecisionEnum": "compliance.models.CellDecision",
    },
}

# The key-encryption key for private signing keys and the audit key (a Fernet key). Set STEWARD_KEK
# in production and keep it outside the database's backups; the generated one under var/ is for the demo.
STEWARD_KEK = env_str("STEWARD_KEK") or _persisted_secret(
    "kek", lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
)
STEWARD_ROOT_LIFETIME_DAYS = env_int("STEWARD_ROOT_LIFETIME_DAYS", 365)
# The audit checkpoint log, written outside the database (one signed JSON line per checkpoint).
# Put it on storage the database's administrators cannot write, and copy it elsewhere.
STEWARD_AUDIT_CHECKPOINT_DIR = env_str("STEWARD_AUDIT_CHECKPOINT_DIR", str(VAR_DIR / "audit-checkpoints"))
# A router not seen for this long is shown as stale on the fleet page.
STEWARD_ROUTER_STALE_SECONDS = env_int("STEWARD_ROUTER_STALE_SECONDS", 300)
# Decisions are judged as of the moment they were made (docs/policy-feed.md, "Judged as of the moment").
# A router's clock may run behind Steward's by the client's own clock slack (5 minutes): a decision
# dated that little before its policy version's publication is judged at the publication.
STEWARD_DECISION_CLOCK_SLACK_SECONDS = env_int("STEWARD_DECISION_CLOCK_SLACK_SECONDS", 300)
# How long a router may still apply a policy version after another with different routes was
# published: one maximum poll backoff of the client (600 s) and the clock slack.
STEWARD_POLICY_GRACE_SECONDS = env_int("STEWARD_POLICY_GRACE_SECONDS", 900)
# A revoked router token stops working within this long in every web process (with or without Redis).
STEWARD_FEED_TOKEN_MEMORY_SECONDS = float(env_str("STEWARD_FEED_TOKEN_MEMORY_SECONDS", "15"))
# Each web process writes the routers' "last seen" times in one batch this often, from a thread of its own.
STEWARD_FEED_LAST_SEEN_FLUSH_SECONDS = float(env_str("STEWARD_FEED_LAST_SEEN_FLUSH_SECONDS", "30"))

# Evaluations
STEWARD_EVALUATION_TIMEOUT = float(env_str("STEWARD_EVALUATION_TIMEOUT", "30"))
# Before a run sends its first case, every endpoint it calls must accept a connection within this.
STEWARD_EVALUATION_PREFLIGHT_TIMEOUT = float(env_str("STEWARD_EVALUATION_PREFLIGHT_TIMEOUT", "3"))
# A run in which more than this share of the cases got no answer ends "errored", not "completed".
STEWARD_EVALUATION_ERRORED_SHARE = float(env_str("STEWARD_EVALUATION_ERRORED_SHARE", "0.5"))
# A PEM file of certificate authorities that model endpoints' TLS certificates may also chain to (a
# private gateway's own CA), on top of the system's.
STEWARD_EVALUATION_CA_BUNDLE = env_str("STEWARD_EVALUATION_CA_BUNDLE")
STEWARD_RUN_STALL_SECONDS = env_int("STEWARD_RUN_STALL_SECONDS", 300)
STEWARD_EVALUATE_ON_PROPOSAL = env_bool("STEWARD_EVALUATE_ON_PROPOSAL", False)
# Categories a model version must pass before an officer can approve it, e.g. "accuracy,safety".
STEWARD_APPROVAL_GATES = env_list("STEWARD_APPROVAL_GATES", [])
STEWARD_DEMO_ENDPOINT_PORT = env_int("STEWARD_DEMO_ENDPOINT_PORT", 8001)
# seed_demo runs the demo suites once against the demo models (the test suite turns it off where unneeded).
STEWARD_SEED_EVALUATION_RUNS = env_bool("STEWARD_SEED_EVALUATION_RUNS", True)

# Change reasons carry an officer's full comment, not just a hundred characters.
SIMPLE_HISTORY_HISTORY_CHANGE_REASON_USE_TEXT_FIELD = True

# --- Notifications ----------------------------------------------------------------------------
# Links in emails and webhook messages point here (the address people open Steward at).
STEWARD_BASE_URL = env_str("STEWARD_BASE_URL", "http://127.0.0.1:8000")
# Email goes out over SMTP when STEWARD_EMAIL_HOST is set; otherwise workers print it to their log.
EMAIL_HOST = env_str("STEWARD_EMAIL_HOST")
EMAIL_PORT = env_int("STEWARD_EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("STEWARD_EMAIL_USER")
EMAIL_HOST_PASSWORD = env_str("STEWARD_EMAIL_PASSWORD")
EMAIL_USE_TLS = env_bool("STEWARD_EMAIL_STARTTLS", False)
EMAIL_USE_SSL = env_bool("STEWARD_EMAIL_SSL", False)
EMAIL_TIMEOUT = env_int("STEWARD_EMAIL_TIMEOUT", 10)
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend"
)
DEFAULT_FROM_EMAIL = env_str("STEWARD_EMAIL_FROM", "steward@localhost")
STEWARD_WEBHOOK_TIMEOUT = env_int("STEWARD_WEBHOOK_TIMEOUT", 10)
# A delivery that fails is retried after 30 s, 60 s, 120 s … (doubling, at most an hour apart).
STEWARD_NOTIFICATION_RETRY_BACKOFF = env_int("STEWARD_NOTIFICATION_RETRY_BACKOFF", 30)
STEWARD_NOTIFICATION_MAX_RETRIES = env_int("STEWARD_NOTIFICATION_MAX_RETRIES", 6)

# --- Steward ----------------------------------------------------------------------------------
STEWARD_HEALTH_PING_TIMEOUT = env_int("STEWARD_HEALTH_PING_TIMEOUT", 5)
# The broker check and the worker ping run at most once per this many seconds per web process.
STEWARD_HEALTH_CACHE_SECONDS = env_int("STEWARD_HEALTH_CACHE_SECONDS", 10)
# Request bodies: every content type is limited by steward.middleware.BodySizeMiddleware before
# anything reads it; Django's own limits below bound what its parsers keep in memory.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("STEWARD_MAX_BODY_BYTES", 5 * 1024 * 1024)
STEWARD_MAX_UPLOAD_BYTES = env_int("STEWARD_MAX_UPLOAD_BYTES", 12 * 1024 * 1024)  # evidence files are ≤ 10 MB
STEWARD_ANONYMOUS_MAX_BODY_BYTES = env_int("STEWARD_ANONYMOUS_MAX_BODY_BYTES", 16 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = env_int("STEWARD_FILE_UPLOAD_MEMORY_BYTES", 2 * 1024 * 1024)
FILE_UPLOAD_TEMP_DIR = env_str("STEWARD_FILE_UPLOAD_TEMP_DIR") or None
DATA_UPLOAD_MAX_NUMBER_FILES = 10

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("STEWARD_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
