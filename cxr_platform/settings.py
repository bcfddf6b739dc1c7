"""Settings for cxr-platform, read from the environment.

One module for every environment; the differences between development, test
and production are small and kept together at the bottom of each section.
``DJANGO_ENV`` picks the environment (``development`` by default, ``test``
under pytest, ``production`` for deployments).
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CXR_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# Nothing in this project may reach a model hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def env(name: str, default=None):
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


ENVIRONMENT = env("DJANGO_ENV") or ("test" if "pytest" in sys.modules else "development")
if ENVIRONMENT not in {"development", "test", "production"}:
    raise ImproperlyConfigured(f"DJANGO_ENV must be development, test or production, not {ENVIRONMENT!r}")
PRODUCTION = ENVIRONMENT == "production"
TESTING = ENVIRONMENT == "test"
CI = env_bool("CI")


def secret(name: str, dev_default: str) -> str:
    """A secret from the environment; development and tests get a fixed, clearly insecure one."""
    value = env(name)
    if value:
        return value
    if PRODUCTION:
        raise ImproperlyConfigured(f"{name} must be set in the environment in production")
    return dev_default


# --- Core -------------------------------------------------------------------
SECRET_KEY = secret("DJANGO_SECRET_KEY", "insecure-development-key-" + "x" * 40)
DEBUG = env_bool("DJANGO_DEBUG", default=ENVIRONMENT == "development")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "" if PRODUCTION else "127.0.0.1,localhost,testserver,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
SITE_URL = env("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
# Addresses or networks of our own reverse proxies (e.g. "127.0.0.1,10.0.0.0/8"): requests
# from them are attributed to the client named in X-Forwarded-For (audit log IPs).
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "axes",
    "cxr_platform",
    "cxr_platform.audit",
    "cxr_platform.api",
    "access",
    "registry",
    "generation",
    "screening",
    "exports",
    "quality",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "cxr_platform.audit.middleware.AuditContextMiddleware",
    # axes must come last so that it sees the result of authentication.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "cxr_platform.urls"
WSGI_APPLICATION = "cxr_platform.wsgi.application"
ASGI_APPLICATION = "cxr_platform.asgi.application"
AUTH_USER_MODEL = "access.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

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
                "cxr_platform.context_processors.platform",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
# Development defaults to SQLite (the embedded default). Tests use PostgreSQL
# whenever it is reachable and require it when CI=true.
_POSTGRES_TEST_URL = env("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
_postgres_test_server = dj_database_url.parse(_POSTGRES_TEST_URL)
_postgres_test_address = (_postgres_test_server["HOST"] or "127.0.0.1", int(_postgres_test_server["PORT"] or 5432))
_SQLITE_URL = f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
if env("DATABASE_URL"):
    _database_url = env("DATABASE_URL")
elif PRODUCTION:
    raise ImproperlyConfigured("DATABASE_URL must be set in production")
elif TESTING and not env_bool("TEST_USE_SQLITE"):
    if _reachable(*_postgres_test_address):
        _database_url = _POSTGRES_TEST_URL
    elif CI:
        raise ImproperlyConfigured("CI=true requires PostgreSQL on %s:%d" % _postgres_test_address)
    else:
        _database_url = _SQLITE_URL
else:
    _database_url = _SQLITE_URL

DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))}
DATABASES["default"].setdefault("TEST", {})
if env("DATABASE_TEST_NAME") or (TESTING and DATABASES["default"]["ENGINE"].endswith("postgresql")):
    # DATABASE_TEST_NAME lets several test runs share one PostgreSQL server without clashing.
    DATABASES["default"]["TEST"]["NAME"] = env("DATABASE_TEST_NAME", "test_cxr_platform")
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
    DATABASES["default"]["OPTIONS"]["init_command"] = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
DATABASE_IS_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")
# The few reads every API request makes (cxr_platform/prepared.py) run as server-side prepared
# statements on PostgreSQL. Turn off behind a pooler in transaction mode that cannot keep them
# (PgBouncer before 1.21, or without max_prepared_statements).
DB_PREPARED_STATEMENTS = env_bool("DB_PREPARED_STATEMENTS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = env("TIME_ZONE", "UTC")
LANGUAGE_CODE = "en-us"

# --- Authentication -------------------------------------------------------------
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
if TESTING:
    # Argon2 is deliberately slow; tests create many users. Production never takes this branch.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *PASSWORD_HASHERS]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = env_int("AXES_COOLOFF_MINUTES", 30) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# The client behind our TRUSTED_PROXIES (as in the audit log), not the proxy: otherwise every client
# behind nginx is 127.0.0.1 and anyone can lock anyone out.
AXES_CLIENT_IP_CALLABLE = "cxr_platform.audit.context.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_ENABLED = env_bool("AXES_ENABLED", True)
OTP_TOTP_ISSUER = "cxr-platform"
# Reviewers and admins must pass TOTP before review/admin pages; development can relax it.
REQUIRE_STAFF_2FA = env_bool("REQUIRE_STAFF_2FA", True)
# Reviewer API tokens (scope "review") are issued only from a 2FA-verified staff session and lapse
# after this many seconds, so a leaked one cannot decide access for long.
REVIEWER_TOKEN_TTL_SECONDS = env_int("REVIEWER_TOKEN_TTL_SECONDS", 3600)

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 60 * 60 * 12)
CSRF_COOKIE_HTTPONLY = False  # the progress pages post with fetch() and read the token from the form

# --- E-mail ---------------------------------------------------------------------
EMAIL_BACKEND = env(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION else "django.core.mail.backends.console.EmailBackend",
)
if TESTING:
    EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "cxr-platform <no-reply@localhost>")

# --- Static files and storage ---------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Media are never served by URL: every file goes through a view that checks permissions.
MEDIA_ROOT = Path(env("MEDIA_ROOT", VAR_DIR / "media"))
STORAGE_BACKEND = env("STORAGE_BACKEND", "local")
_default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(MEDIA_ROOT)}}
if STORAGE_BACKEND == "s3":
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env("S3_BUCKET"),
            "endpoint_url": env("S3_ENDPOINT_URL"),
            "region_name": env("S3_REGION"),
            "access_key": env("S3_ACCESS_KEY_ID"),
            "secret_key": env("S3_SECRET_ACCESS_KEY"),
            "default_acl": "private",
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# How protected downloads reach the client: "django" streams them, "nginx" sends
# X-Accel-Redirect, "apache" sends X-Sendfile (the front server then serves the bytes).
DOWNLOAD_OFFLOAD = env("DOWNLOAD_OFFLOAD", "django")
DOWNLOAD_OFFLOAD_PREFIX = env("DOWNLOAD_OFFLOAD_PREFIX", "/protected/")
DOWNLOAD_LINK_TTL_SECONDS = env_int("DOWNLOAD_LINK_TTL_SECONDS", 3600)

# --- Keys ---------------------------------------------------------------------------------
AUDIT_HMAC_KEY = secret("AUDIT_HMAC_KEY", "insecure-development-audit-key")


def _dev_fernet_key(label: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(f"{SECRET_KEY}:{label}".encode()).digest()).decode()


# Comma-separated Fernet keys, newest first: files are encrypted with the first
# and decrypted with any, so a new key can be added in front and old files rotated.
FILE_ENCRYPTION_KEYS = env_list("FILE_ENCRYPTION_KEYS") or (
    [] if PRODUCTION else [_dev_fernet_key("file-encryption")]
)
if PRODUCTION and not FILE_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("FILE_ENCRYPTION_KEYS must be set in production")
# Ed25519 private key (PEM, or base64 of the 32-byte seed) that signs export manifests.
EXPORT_SIGNING_KEY = secret(
    "EXPORT_SIGNING_KEY",
    base64.b64encode(hashlib.sha256(f"{SECRET_KEY}:export-signing".encode()).digest()).decode(),
)

# --- Celery ---------------------------------------------------------------------------------
# The embedded default is kombu's filesystem transport: no broker server needed.
BROKER_DIR = VAR_DIR / "broker"
_redis_test_address = (env("TEST_REDIS_HOST", "127.0.0.1"), env_int("TEST_REDIS_PORT", 6379))
if env("CELERY_BROKER_URL"):
    CELERY_BROKER_URL = env("CELERY_BROKER_URL")
elif PRODUCTION:
    raise ImproperlyConfigured("CELERY_BROKER_URL must be set in production")
elif TESTING and _reachable(*_redis_test_address):
    # Under `pytest -n N` each xdist worker (gw0, gw1, …) gets its own Redis database, as it gets its own test DB.
    _xdist_worker = env("PYTEST_XDIST_WORKER", "")
    _xdist_index = int(_xdist_worker[2:]) if _xdist_worker[2:].isdigit() else 0
    CELERY_BROKER_URL = "redis://%s:%d/" % _redis_test_address + str(env_int("TEST_REDIS_DB", 1) + _xdist_index)
elif TESTING and CI:
    raise ImproperlyConfigured("CI=true requires Redis on %s:%d" % _redis_test_address)
else:
    CELERY_BROKER_URL = "filesystem://"
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
        # kombu otherwise writes its exchange bindings to ./control in the working directory
        "control_folder": str(BROKER_DIR / "control"),
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # A batch must be acknowledged within this time or it is redelivered.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 1800)}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "generation.tasks.generate_batch": {"queue": "gpu"},
}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE: dict = {}  # apps add their periodic tasks in cxr_platform/celery.py
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Models and generation -----------------------------------------------------------------------
MODEL_ROOT = Path(env("MODEL_ROOT", VAR_DIR / "models"))
GENERATION_DEVICE = env("GENERATION_DEVICE", "auto")  # auto, cuda, cuda:N or cpu
GENERATION_BATCH_SIZE = env_int("GENERATION_BATCH_SIZE", 8)
GENERATION_BATCH_MAX_ATTEMPTS = env_int("GENERATION_BATCH_MAX_ATTEMPTS", 3)  # then its images are reported failed
GENERATION_RETRY_BACKOFF_SECONDS = env_int("GENERATION_RETRY_BACKOFF_SECONDS", 5)
GENERATION_CANCEL_CHECK_SECONDS = float(env("GENERATION_CANCEL_CHECK_SECONDS", "2"))  # cohort status read at most this often
# A running batch with no heartbeat for this long is taken to have lost its worker and is re-enqueued.
GENERATION_STALE_BATCH_SECONDS = env_int("GENERATION_STALE_BATCH_SECONDS", 300)
GENERATION_RECONCILE_SECONDS = env_int("GENERATION_RECONCILE_SECONDS", 60)
# A queued batch whose message is older than this while the broker's gpu queue is empty lost its message
# (a non-persistent Redis restarted) and is sent again by the reconciler.
GENERATION_REQUEUE_AFTER_SECONDS = env_int("GENERATION_REQUEUE_AFTER_SECONDS", 300)
# Workers write a heartbeat row this often; one not seen for GENERATION_WORKER_STALE_SECONDS (default 4 beats)
# no longer counts as a consumer of its queues (/api/v1/health, "No GPU worker is running" on cohort pages).
GENERATION_WORKER_HEARTBEAT_SECONDS = float(env("GENERATION_WORKER_HEARTBEAT_SECONDS", "15"))
GENERATION_WORKER_STALE_SECONDS = float(env("GENERATION_WORKER_STALE_SECONDS", "0")) or 4 * GENERATION_WORKER_HEARTBEAT_SECONDS
SCREENING_MAX_REGENERATIONS = env_int("SCREENING_MAX_REGENERATIONS", 3)  # new seeds for a flagged image
# Quality control (docs/quality.md): attempts per patient, counting the first, before the cohort's policy
# (deliver flagged, or drop and report) applies; QC_AFTER_LAST_ATTEMPT is the default of that policy.
QC_MAX_ATTEMPTS = env_int("QC_MAX_ATTEMPTS", 3)
QC_AFTER_LAST_ATTEMPT = env("QC_AFTER_LAST_ATTEMPT", "deliver")  # deliver (flagged) or drop
QC_DEVICE = env("QC_DEVICE", "auto")  # where QC classifiers run: auto, cuda, cuda:N or cpu

# --- API ----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "cxr_platform.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": [
        "cxr_platform.api.renderers.FastJSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "cxr_platform.api.exceptions.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": env("API_THROTTLE_USER", "2000/hour")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "cxr-platform API",
    "DESCRIPTION": "Credentialed access to RoentGen synthetic chest X-ray generation.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Every lifecycle has a `status` field; name each enum after its model so the schema is unambiguous.
    "ENUM_NAME_OVERRIDES": {
        "AccessRequestStatusEnum": "access.models.AccessRequest.Status",
        "AccessGrantStatusEnum": "access.models.AccessGrant.Status",
        "CohortStatusEnum": "generation.models.Cohort.Status",
        "GenerationBatchStatusEnum": "generation.models.GenerationBatch.Status",
        "SyntheticImageStatusEnum": "generation.models.SyntheticImage.Status",
        "ModelVersionStatusEnum": "registry.models.ModelVersion.Status",
        "ExportStatusEnum": "exports.models.Export.Status",
        "DeliveryStatusEnum": "exports.models.Delivery.Status",
        "DestinationKindEnum": "exports.models.Destination.Kind",
        "DeliveryStatusEnum": "exports.models.Delivery.Status",
        "DeliveryInstanceStatusEnum": "exports.models.DeliveryInstance.Status",
        "ScreeningIndexStatusEnum": "screening.models.ScreeningIndex.Status",
    },
}

# --- generation: periodic reconciler (re-enqueues batches whose worker died) ----------------------
CELERY_BEAT_SCHEDULE["generation-reconcile-batches"] = {
    "task": "generation.tasks.reconcile_batches",
    "schedule": float(GENERATION_RECONCILE_SECONDS),
}

# --- Logging ---------------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}

# --- Production hardening -------------------------------------------------------------------------
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
    X_FRAME_OPTIONS = "DENY"

# --- access (issue 3) -------------------------------------------------------------------------------
# Periodic expiry of lapsed grants (the access policy also expires them on the holder's next request).
CELERY_BEAT_SCHEDULE["access-expire-grants"] = {"task": "access.tasks.expire_grants", "schedule": 3600.0}
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 60 * 60 * 24)

# --- exports (issue 7) -------------------------------------------------------------------------------
EXPORT_RETENTION_SECONDS = env_int("EXPORT_RETENTION_SECONDS", 7 * 24 * 3600)  # packages deleted after this
EXPORT_TRANSFER_SYNTAX = env("EXPORT_TRANSFER_SYNTAX", "explicit")  # explicit | jpegls | rle
EXPORT_WORKERS = env_int("EXPORT_WORKERS", 0)  # DICOM encoder threads per export; 0 = min(4, CPUs)
# UIDs derive from the installation's random UUID (exports.Installation); this only adds to it.
EXPORT_UID_NAMESPACE = env("EXPORT_UID_NAMESPACE", "")
EXPORT_WORK_DIR = env("EXPORT_WORK_DIR", "") or None  # where zips are built; None: the system temp dir
EXPORT_MAX_ACTIVE_PER_USER = env_int("EXPORT_MAX_ACTIVE_PER_USER", 3)  # queued + building exports per user
EXPORT_STALE_SECONDS = env_int("EXPORT_STALE_SECONDS", 3600)  # building with no progress this long: failed
EXPORT_LEASE_SECONDS = env_int("EXPORT_LEASE_SECONDS", 120)  # a building export's lease; a redelivered task waits for it
EXPORT_REQUEUE_AFTER_SECONDS = env_int("EXPORT_REQUEUE_AFTER_SECONDS", 900)  # queued this long with no build: sent again
CELERY_BEAT_SCHEDULE["exports-expire"] = {"task": "exports.tasks.expire_exports", "schedule": 900.0}
# Push to a PACS (exports.delivery): a network timeout per answer, STOW-RS instances per request, and
# how long a sending delivery's progress may stand still before a redelivered task takes it over.
DELIVERY_TIMEOUT_SECONDS = env_int("DELIVERY_TIMEOUT_SECONDS", 30)
DELIVERY_STOW_BATCH = env_int("DELIVERY_STOW_BATCH", 20)
DELIVERY_LEASE_SECONDS = env_int("DELIVERY_LEASE_SECONDS", 120)  # > 2 × DELIVERY_TIMEOUT_SECONDS
DELIVERY_STALE_SECONDS = env_int("DELIVERY_STALE_SECONDS", 3600)  # sending without progress this long: failed
DELIVERY_MAX_ACTIVE_PER_USER = env_int("DELIVERY_MAX_ACTIVE_PER_USER", 5)  # queued + sending per user

# --- Screening (screening app) -------------------------------------------------------------------
SCREENING_INDEX_ROOT = env("SCREENING_INDEX_ROOT", "")  # empty: MEDIA_ROOT/screening-index
SCREENING_STAGE_B_WEIGHTS = env("SCREENING_STAGE_B_WEIGHTS", "")  # local TorchScript encoder; empty: Stage B off
SCREENING_STAGE_B_SHA256 = env("SCREENING_STAGE_B_SHA256", "")
SCREENING_STAGE_B_INPUT_SIZE = env_int("SCREENING_STAGE_B_INPUT_SIZE", 224)
SCREENING_DUPLICATE_THRESHOLD = float(env("SCREENING_DUPLICATE_THRESHOLD", "0.95"))
SCREENING_DEMO_TRAIN_DIR = env("SCREENING_DEMO_TRAIN_DIR", "")

# --- API input limits (issue 15) ---------------------------------------------------------------
# Under /api/v1/: bodies over API_MAX_BODY_BYTES are refused (413) before they are read, JSON nested
# deeper than API_MAX_JSON_DEPTH (400) before it is parsed, NUL characters anywhere (400); list
# pages hold at most API_MAX_PAGE_SIZE items; every error is JSON.
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 1024 * 1024)
API_MAX_JSON_DEPTH = env_int("API_MAX_JSON_DEPTH", 32)
API_MAX_PAGE_SIZE = env_int("API_MAX_PAGE_SIZE", 500)
MIDDLEWARE.insert(MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1, "cxr_platform.api.middleware.ApiGuardMiddleware")
REST_FRAMEWORK["DEFAULT_PAGINATION_CLASS"] = "cxr_platform.api.pagination.BoundedLimitOffsetPagination"
REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] = [
    "cxr_platform.api.parsers.LimitedJSONParser",
    "cxr_platform.api.parsers.LimitedFormParser",
    "cxr_platform.api.parsers.LimitedMultiPartParser",
]
SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"] = [
    "drf_spectacular.hooks.postprocess_schema_enums",
    "cxr_platform.api.schema.add_error_responses",
]

# --- Content-Security-Policy (issue 15) ----------------------------------------------------------
# Scripts only from our own static files, or inline with this response's nonce
# (<script nonce="{{ request.csp_nonce }}">). Inline style attributes remain allowed.
from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE  # noqa: E402

INSTALLED_APPS.append("csp")
MIDDLEWARE.insert(MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1, "csp.middleware.CSPMiddleware")
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# --- Audit anchors (issue 15) ---------------------------------------------------------------------
# Append-only file on the application host (out of the database role's reach) to which the newest
# audit event's SEQUENCE:MAC is appended on a schedule; verify_audit_log checks the log against it.
AUDIT_ANCHOR_FILE = env("AUDIT_ANCHOR_FILE", "" if TESTING else str(VAR_DIR / "audit-anchors.log"))
AUDIT_ANCHOR_INTERVAL_SECONDS = env_int("AUDIT_ANCHOR_INTERVAL_SECONDS", 3600)
CELERY_BEAT_SCHEDULE["audit-write-anchor"] = {
    "task": "cxr_platform.audit.tasks.write_audit_anchor",
    "schedule": float(AUDIT_ANCHOR_INTERVAL_SECONDS),
}

# --- Database roles (issue 15) ----------------------------------------------------------------------
# PostgreSQL: the application connects as DATABASE_URL's role, which owns no table; migrate (and
# grant_app_role) connect as DATABASE_MIGRATE_URL's role, the owner. After migrate the application's
# role is granted what Django needs, and on the audit table only SELECT and INSERT.
DATABASE_MIGRATE_URL = env("DATABASE_MIGRATE_URL", "")
DATABASE_APP_ROLE = env("DATABASE_APP_ROLE", "")
_OWNER_COMMANDS = {"migrate", "grant_app_role"}
if DATABASE_MIGRATE_URL and len(sys.argv) > 1 and sys.argv[1] in _OWNER_COMMANDS:
    DATABASE_APP_ROLE = DATABASE_APP_ROLE or DATABASES["default"].get("USER", "")
    _owner = dj_database_url.parse(DATABASE_MIGRATE_URL)
    DATABASES["default"].update({key: _owner[key] for key in ("NAME", "USER", "PASSWORD", "HOST", "PORT") if key in _owner})
    DATABASES["default"]["CONN_MAX_AGE"] = 0
