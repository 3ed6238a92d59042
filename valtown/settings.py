"""One settings module, read from the environment.

Embedded defaults: SQLite, the in-memory channel layer, console email.
DATABASE_URL switches to PostgreSQL, REDIS_URL to the Redis channel layer.
"""

import hashlib
import json
import os
import sys
import tempfile
from urllib.parse import urlparse
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name, default=""):
    return os.environ.get(name, default)


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name, default):
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_float(name, default):
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def env_list(name, default=""):
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        # Sessions and the secrets' encryption key derive from it: never guessable in production.
        raise ImproperlyConfigured("Set SECRET_KEY in the environment when DEBUG is off.")
    SECRET_KEY = "dev-only-not-secret-" + hashlib.sha256(str(BASE_DIR).encode()).hexdigest()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],.localhost,testserver")
SITE_NAME = env_str("SITE_NAME", "Val Town")
SITE_ROOT = env_str("SITE_ROOT", "http://localhost:8000")

INSTALLED_APPS = [
    # First, so that its runserver (daphne's, with the module origin) is the one run.
    "valtown",
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "django.contrib.postgres",
    "channels",
    "django_htmx",
    "ninja",
    "allauth",
    "allauth.account",
    "accounts",
    "accounts.secrets",
    "vals",
    "vals.evaluations",
    "runtime",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "valtown.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "valtown.urls"
ASGI_APPLICATION = "valtown.asgi.application"
WSGI_APPLICATION = None

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
                "valtown.context_processors.site",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DB_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the scheduler and the web process write without "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
SITE_ID = 1
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
ACCOUNT_LOGOUT_REDIRECT_URL = "home"
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = env_str("ACCOUNT_EMAIL_VERIFICATION", "none")
ACCOUNT_USERNAME_MIN_LENGTH = 2
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
ACCOUNT_LOGOUT_ON_GET = False

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(BASE_DIR / "sent-emails"))
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "valtown@localhost")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
SERVE_STATIC = env_bool("SERVE_STATIC", True)

# Secrets: Fernet keys, newest first. The development default derives one from SECRET_KEY.
SECRETS_KEYS = env_list("SECRETS_KEYS")

# std/blob: each user's key-value store (vals/blob.py). Values are files in the "blobs"
# storage: the folder BLOB_ROOT by default; BLOB_STORAGE_BACKEND (e.g.
# "storages.backends.s3.S3Storage") with BLOB_STORAGE_OPTIONS (JSON, e.g. {"bucket_name": ...})
# points it at S3 or similar.
BLOB_ROOT = env_str("BLOB_ROOT", str(BASE_DIR / "var" / "blobs"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "blobs": {
        "BACKEND": env_str("BLOB_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"),
        "OPTIONS": json.loads(env_str("BLOB_STORAGE_OPTIONS") or "null") or {"location": BLOB_ROOT},
    },
}
BLOB_QUOTA_BYTES = env_int("BLOB_QUOTA_BYTES", 50 * 1024 * 1024)
BLOB_MAX_KEYS = env_int("BLOB_MAX_KEYS", 100_000)
# Characters. Keep it under about 600 on PostgreSQL (its unique index's entry limit).
BLOB_MAX_KEY_LENGTH = env_int("BLOB_MAX_KEY_LENGTH", 512)
# Values travel as base64 in one host call, capped at RUNTIME_MAX_HOST_CALL_BYTES (1 MB of
# JSON by default): 4/3 of this plus the key must fit.
BLOB_MAX_VALUE_BYTES = env_int("BLOB_MAX_VALUE_BYTES", 700_000)

# The module host (vals/module_host.py): vals import vals and /std/ modules from it.
# Sandboxes reach it at RUNTIME_MODULE_HOST: this very web process's module origin, a
# port of its own on loopback that serves nothing but modules (valtown/module_origin.py),
# by a name that gets each sandbox's import token, so it can serve a val's owner their
# private vals. RUNTIME_LIBRARY_HOST is the same port by another name, where no token
# goes: Restricted Library Mode loads other users' vals from it. They must differ.
# With several web processes, give each its own RUNTIME_MODULE_HOST (see Procfile).
_site = urlparse(SITE_ROOT)
_module_port = (_site.port or 8000) + 1 if _site.hostname in ("localhost", "127.0.0.1") else 8001
RUNTIME_MODULE_HOST = env_str("RUNTIME_MODULE_HOST", f"127.0.0.1:{_module_port}")
RUNTIME_MODULE_SCHEME = "http"
RUNTIME_LIBRARY_HOST = env_str("RUNTIME_LIBRARY_HOST", "localhost:" + str(urlparse("//" + RUNTIME_MODULE_HOST).port))
RUNTIME_LIBRARY_SCHEME = env_str("RUNTIME_LIBRARY_SCHEME", "http")
# Deno processes kept started for evaluations: also how many run at once. One caller
# holds at most all but one of them (RUNTIME_MAX_PROCESSES_PER_TENANT), and a val waiting
# on api() holds its process while the val it called runs, so a chain of api() calls
# API_MAX_DEPTH deep needs API_MAX_DEPTH + 1 of them within that share: with 5, the
# default depth of 3 fits. A deeper chain is refused as nesting too deeply.
RUNTIME_POOL_SIZE = env_int("RUNTIME_POOL_SIZE", 5)
# api(): how deep api calls may nest, and how many one top-level evaluation may make in all.
API_MAX_DEPTH = env_int("API_MAX_DEPTH", 3)
# How long an HTTP val's lookup (val, code, secrets) is reused by later requests: a save,
# privacy change or secret reaches its endpoint within this long (vals/http_gateway.py).
HTTP_VAL_LOOKUP_SECONDS = env_float("HTTP_VAL_LOOKUP_SECONDS", 1.0)
API_MAX_CALLS_PER_EVALUATION = env_int("API_MAX_CALLS_PER_EVALUATION", 20)
# /v1/eval without a token: no secrets, and a stricter rate limit than API_RATE_LIMIT_PER_IP.
ANONYMOUS_EVAL_RATE_LIMIT_PER_IP = env_int("ANONYMOUS_EVAL_RATE_LIMIT_PER_IP", 10)

# Vals
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 12 * 1024 * 1024)
VAL_MAX_CODE_BYTES = env_int("VAL_MAX_CODE_BYTES", 1024 * 1024)
VAL_MAX_README_BYTES = env_int("VAL_MAX_README_BYTES", 64 * 1024)
# How many of the vals a val imports are kept for "used by" lists (the first ones).
VAL_MAX_RECORDED_IMPORTS = env_int("VAL_MAX_RECORDED_IMPORTS", 1000)

# The REST API's rate limits, per minute.
API_RATE_LIMIT_PER_TOKEN = env_int("API_RATE_LIMIT_PER_TOKEN", 600)
API_RATE_LIMIT_PER_IP = env_int("API_RATE_LIMIT_PER_IP", 1200)

# Caches (rate limits live here): process memory by default, Redis when scaled out.
if REDIS_URL:
    # Short timeouts: an unreachable Redis must fail fast, not stall requests and evaluations.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Scale-out: surviving a Redis restart (tests/scale/test_faults.py) ---
if REDIS_URL:
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    # After Redis restarts, each pooled connection fails on its next use: retry once, on
    # a fresh connection, so live logs resume at once instead of failing a websocket.
    CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [{"address": REDIS_URL, "retry": Retry(NoBackoff(), 1)}]

# Evaluations
EVALUATION_TIMEOUT_SECONDS = env_int("EVALUATION_TIMEOUT_SECONDS", 10)
# No evaluation may run longer than this, whatever its trigger: past it, a running
# record whose process is gone is marked interrupted.
EVALUATION_MAX_SECONDS = env_int("EVALUATION_MAX_SECONDS", 120)
EVALUATION_MAX_LOG_BYTES = env_int("EVALUATION_MAX_LOG_BYTES", 1024 * 1024)
# Runs (Run button and API) one user may have going at once, so nobody can fill the pool.
EVALUATION_MAX_RUNNING_PER_USER = env_int("EVALUATION_MAX_RUNNING_PER_USER", 4)
EVALUATION_KEEP_PER_VAL = env_int("EVALUATION_KEEP_PER_VAL", 200)
EVALUATION_KEEP_DAYS = env_int("EVALUATION_KEEP_DAYS", 30)
# Who writes HTTP vals' evaluation records: "process", a recordevaluations process each
# server starts, or "thread", a thread of the server (see vals/evaluations/batch.py).
EVALUATION_WRITER = env_str("EVALUATION_WRITER", "process")
if EVALUATION_WRITER not in ("process", "thread"):
    raise ImproperlyConfigured('EVALUATION_WRITER must be "process" or "thread".')

# Cron vals run at most this often. Tests lower it.
CRON_MIN_INTERVAL_SECONDS = env_int("CRON_MIN_INTERVAL_SECONDS", 60)
# The schedule a new cron val starts with.
CRON_DEFAULT_SCHEDULE = env_str("CRON_DEFAULT_SCHEDULE", "every 1 hour")

# HTTP vals are served on their own origins: http://<username>-<valname>.<HTTP_VAL_DOMAIN>.
# *.localhost resolves to loopback in browsers and curl, so the default works out of the box.
HTTP_VAL_DOMAIN = env_str("HTTP_VAL_DOMAIN", "web.localhost:8000")
HTTP_VAL_SCHEME = env_str("HTTP_VAL_SCHEME", "http")
HTTP_VAL_MAX_BODY_BYTES = env_int("HTTP_VAL_MAX_BODY_BYTES", 10 * 1024 * 1024)

# Email vals: <username>.<valname>@EMAIL_DOMAIN. Inbound mail over HTTP needs this token.
EMAIL_DOMAIN = env_str("EMAIL_DOMAIN", "localhost")
EMAIL_MAX_BYTES = env_int("EMAIL_MAX_BYTES", 10 * 1024 * 1024)
INBOUND_EMAIL_TOKEN = env_str("INBOUND_EMAIL_TOKEN", "dev-inbound-email-token" if DEBUG else "")
EMAIL_SENDS_PER_HOUR = env_int("EMAIL_SENDS_PER_HOUR", 30)
SMTP_HOST = env_str("SMTP_HOST", "127.0.0.1")
SMTP_PORT = env_int("SMTP_PORT", 2525)

# The scheduler runs inside the server process unless it runs as its own processes
# (`manage.py runscheduler`), as it should when the platform is scaled out.
EMBEDDED_SCHEDULER = env_bool("EMBEDDED_SCHEDULER", not REDIS_URL)
SCHEDULER_TICK_SECONDS = env_float("SCHEDULER_TICK_SECONDS", 5)
SCHEDULER_HOUSEKEEPING_SECONDS = env_int("SCHEDULER_HOUSEKEEPING_SECONDS", 600)
# Cron runs started per tick at most; the rest start on the next tick.
SCHEDULER_BATCH = env_int("SCHEDULER_BATCH", 50)

# --- Web security: HTTPS, cookies, headers (docs/deploy.md) ---------------------------
# HTTPS is on when SITE_ROOT is https:// (override with HTTPS=false|true). Then cookies are
# Secure, plain HTTP is redirected, and browsers are told to use HTTPS only (HSTS).
HTTPS = env_bool("HTTPS", SITE_ROOT.startswith("https://"))
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", HTTPS)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
# Sandboxes import vals and /std/ modules from this very process over plain HTTP on
# loopback (RUNTIME_MODULE_HOST and RUNTIME_LIBRARY_HOST), never through nginx: their
# names are allowed hosts, and module paths are never redirected to HTTPS.
for _module_hostname in (urlparse("//" + RUNTIME_MODULE_HOST).hostname, urlparse("//" + RUNTIME_LIBRARY_HOST).hostname):
    if _module_hostname and _module_hostname not in ALLOWED_HOSTS:
        ALLOWED_HOSTS = [*ALLOWED_HOSTS, _module_hostname]
SECURE_REDIRECT_EXEMPT = [r"^v/[^/]+/[^/]+\.ts$", r"^std/"]
# Behind nginx, which sets X-Forwarded-Proto; never set this when clients reach daphne directly.
if env_bool("BEHIND_PROXY"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Sessions live in the database, shared by every process and machine (never process memory).
SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SESSION_COOKIE_HTTPONLY = CSRF_COOKIE_HTTPONLY = True  # pages carry the CSRF token; no script reads the cookie
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
if HTTPS:
    # __Host- cookies must be Secure, host-only and Path=/: a browser refuses them from any
    # other host, so an HTTP val on a sibling subdomain can't plant a session or CSRF cookie.
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
CSRF_TRUSTED_ORIGINS = [f"{_site.scheme}://{_site.netloc}", *env_list("CSRF_TRUSTED_ORIGINS")]
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# Every app page gets this Content-Security-Policy; valtown/middleware.py adds each
# response's style nonce and frame-src for HTTP vals' origins. HTTP vals are served
# before Django, so it never reaches them.
CONTENT_SECURITY_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:", "https:"],  # readmes may show images from anywhere
    "connect-src": ["'self'"],  # the live-log websocket is same-origin
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
# Sign-in throttling (allauth, counted in the cache: Redis when REDIS_URL is set).
ACCOUNT_RATE_LIMITS = {
    "login": "30/m/ip",
    # 5 wrong passwords for one account in 5 minutes, or 10 a minute from one address.
    "login_failed": "10/m/ip,5/300s/key",
    "signup": "20/m/ip",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
    "change_password": "5/m/user",
}

# --- Runtime pool sizing from the environment (docs/deploy.md) -------------------------
# Each one set in the environment overrides runtime/config.py's default for that field.
for _name, _read in {
    "RUNTIME_MAX_WAITING": env_int,
    "RUNTIME_WAIT_TIMEOUT_SECONDS": env_float,
    "RUNTIME_HEAP_MB": env_int,
    "RUNTIME_MAX_RSS_MB": env_int,
    "RUNTIME_HTTP_MAX_PROCESSES": env_int,
    "RUNTIME_HTTP_MAX_CONCURRENT_PER_KEY": env_int,
    "RUNTIME_HTTP_SPARE_PROCESSES": env_int,
    "RUNTIME_HTTP_IDLE_SECONDS": env_float,
    "RUNTIME_HTTP_RECYCLE_RSS_MB": env_int,
    "RUNTIME_WORK_DIR": env_str,
    "RUNTIME_DENO_DIR": env_str,
}.items():
    if os.environ.get(_name):
        globals()[_name] = _read(_name, None)

# Test-only speedups go at the bottom.
# VALTOWN_TESTING is set for servers that tests start (tests/live.py), so they share the hashers.
if "pytest" in sys.modules or "test" in sys.argv[1:2] or env_bool("VALTOWN_TESTING"):
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Tests save a val and request it at once.
    HTTP_VAL_LOOKUP_SECONDS = env_float("HTTP_VAL_LOOKUP_SECONDS", 0)
    if "pytest" in sys.modules:
        # A test's records must land in its own transaction. (Servers it starts keep "process".)
        EVALUATION_WRITER = env_str("EVALUATION_WRITER", "thread")
    EMAIL_BACKEND = env_str("TEST_EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")
    if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        # A file, not memory, so that a real server started by a test (tests/live.py) shares it.
        DATABASES["default"]["TEST"] = {"NAME": f"{tempfile.gettempdir()}/valtown-test-{os.getpid()}.sqlite3"}
    elif env_str("TEST_DATABASE_NAME"):
        # Lets two test runs share one PostgreSQL server without sharing a test database.
        DATABASES["default"]["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME")}
