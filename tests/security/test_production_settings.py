"""Production settings: `manage.py check --deploy` is clean, cookies are Secure, HttpOnly,
SameSite and __Host- prefixed, plain HTTP is redirected and HTTPS pinned by HSTS, the
module host still answers sandboxes over loopback HTTP, and a scaled-out platform keeps
sessions, caches and rate limits in shared stores.

Settings are read from the environment at import, so each environment is loaded by a
fresh Python process; the request tests then apply exactly what that process reported.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from tests.factory import make_user

ROOT = Path(__file__).resolve().parent.parent.parent
SITE = "valtown.example.com"
PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": "a-production-secret-key-that-is-long-and-random-enough-9f3b7c1d2e",
    "SITE_ROOT": f"https://{SITE}",
    "ALLOWED_HOSTS": SITE,
    "HTTP_VAL_DOMAIN": "web.valtown-vals.example",
    "HTTP_VAL_SCHEME": "https",
    "BEHIND_PROXY": "true",
}
SCALED_OUT_ENV = {
    **PRODUCTION_ENV,
    "DATABASE_URL": "postgres://valtown@db.internal:5432/valtown",
    "REDIS_URL": "redis://redis.internal:6379/0",
}
SECURITY_SETTINGS = [
    "ALLOWED_HOSTS",
    "SECURE_SSL_REDIRECT",
    "SECURE_REDIRECT_EXEMPT",
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SESSION_COOKIE_NAME",
    "SESSION_COOKIE_SECURE",
    "SESSION_COOKIE_HTTPONLY",
    "SESSION_COOKIE_SAMESITE",
    "CSRF_COOKIE_NAME",
    "CSRF_COOKIE_SECURE",
    "CSRF_COOKIE_HTTPONLY",
    "CSRF_COOKIE_SAMESITE",
    "CSRF_TRUSTED_ORIGINS",
    "RUNTIME_MODULE_HOST",
]


# What this test run's environment must not lend the production process.
NOT_PRODUCTION = {"DATABASE_URL", "REDIS_URL", "VALTOWN_TESTING", "DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE", "TEST_DATABASE_NAME"}


def clean_environment(env):
    return {**{k: v for k, v in os.environ.items() if k not in NOT_PRODUCTION}, "DJANGO_SETTINGS_MODULE": "valtown.settings", **env}


def run_python(env, code):
    """Runs code in a fresh process with the given environment on top of a clean one."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean_environment(env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def settings_under(env, names):
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n, None) for n in {names!r}}}))"
    )
    process = run_python(env, code)
    assert process.returncode == 0, process.stderr
    return json.loads(process.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def production():
    return settings_under(PRODUCTION_ENV, SECURITY_SETTINGS)


@pytest.fixture
def production_settings(settings, production):
    for name, value in production.items():
        setattr(settings, name, value)
    return settings


def check_deploy(env):
    """`manage.py check --deploy` with env as the whole environment: (exit code, output)."""
    process = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=clean_environment(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return process.returncode, process.stdout + process.stderr


def test_check_deploy_is_clean_under_production_settings():
    returncode, output = check_deploy(PRODUCTION_ENV)
    assert returncode == 0, output
    assert "System check identified no issues (0 silenced)." in output


def guide_environment():
    """The environment file docs/deploy.md tells a deployment to write, placeholders filled."""
    guide = (ROOT / "docs" / "deploy.md").read_text()
    text = guide.split("# /etc/valtown/env", 1)[1].split("```", 1)[0]
    env = {}
    for line in text.splitlines()[1:]:
        if line.strip() and not line.startswith("#"):
            name, value = line.split("=", 1)
            env[name] = value
    env["SECRET_KEY"] = "a-production-secret-key-that-is-long-and-random-enough-9f3b7c1d2e"
    env["SECRETS_KEYS"] = "ZmVybmV0LWtleS1mb3ItdGVzdHMtMzItYnl0ZXMtbG9uZz0="
    return env


def test_the_deploy_guides_environment_passes_check_deploy():
    env = guide_environment()
    assert env["DEBUG"] == "false" and env["SITE_ROOT"].startswith("https://")
    returncode, output = check_deploy(env)
    assert returncode == 0, output


def test_production_refuses_to_start_without_a_secret_key():
    process = run_python({**PRODUCTION_ENV, "SECRET_KEY": ""}, "import django; django.setup()")
    assert process.returncode != 0
    assert "Set SECRET_KEY in the environment when DEBUG is off." in process.stderr


def test_development_keeps_plain_http_and_plain_cookie_names():
    development = settings_under({"DEBUG": "true", "SITE_ROOT": "http://localhost:8000"}, SECURITY_SETTINGS)
    assert development["SECURE_SSL_REDIRECT"] is False and development["SECURE_HSTS_SECONDS"] == 0
    assert development["SESSION_COOKIE_SECURE"] is False
    assert (development["SESSION_COOKIE_NAME"], development["CSRF_COOKIE_NAME"]) == ("sessionid", "csrftoken")


def test_production_cookies_are_secure_httponly_lax_and_host_only(production_settings, db):
    make_user("alice")
    client = Client(HTTP_HOST=SITE)
    client.get("/accounts/login/", secure=True)
    response = client.post(
        "/accounts/login/",
        {"login": "alice", "password": "correct horse 1", "csrfmiddlewaretoken": client.cookies["__Host-csrftoken"].value},
        secure=True,
        HTTP_REFERER=f"https://{SITE}/accounts/login/",
    )
    assert response.status_code == 302
    session = response.cookies["__Host-sessionid"]
    csrf = client.cookies["__Host-csrftoken"]
    for cookie in (session, csrf):
        # __Host-: Secure, Path=/ and no Domain, or browsers refuse it.
        assert cookie["secure"] and cookie["httponly"]
        assert cookie["samesite"] == "Lax"
        assert cookie["path"] == "/" and not cookie["domain"]
    assert "sessionid" not in response.cookies and "csrftoken" not in client.cookies


def test_plain_http_is_redirected_to_https(production_settings, db):
    response = Client(HTTP_HOST=SITE).get("/settings/tokens?x=1")
    assert response.status_code == 301
    assert response["Location"] == f"https://{SITE}/settings/tokens?x=1"


def test_https_responses_pin_https_with_hsts(production_settings, db):
    response = Client(HTTP_HOST=SITE).get("/", secure=True)
    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"


def test_behind_nginx_x_forwarded_proto_says_the_request_was_https(production_settings, db):
    response = Client(HTTP_HOST=SITE).get("/", HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 200
    assert "Strict-Transport-Security" in response


def test_sandboxes_still_import_modules_over_loopback_http(production_settings, db):
    """The module host is this process on 127.0.0.1, reached without nginx and without TLS."""
    host = production_settings.RUNTIME_MODULE_HOST
    assert host.startswith("127.0.0.1:")
    response = Client(HTTP_HOST=host).get("/std/email.ts")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/typescript")
    # Everything else on that name is still sent to HTTPS.
    assert Client(HTTP_HOST=host).get("/settings/tokens").status_code == 301


def test_csrf_trusts_only_the_sites_own_origin(production):
    assert production["CSRF_TRUSTED_ORIGINS"] == [f"https://{SITE}"]


def test_scaled_out_state_lives_in_shared_stores_not_process_memory():
    """With DATABASE_URL and REDIS_URL, sessions are in PostgreSQL, and the cache that
    allauth's login throttling and our rate limits count in is Redis."""
    code = """
import json, django
django.setup()
from django.conf import settings
from django.core.cache import cache, caches
import allauth.core.internal.ratelimit as allauth_ratelimit
import vals.ratelimit as our_ratelimit
print(json.dumps({
    "session_engine": settings.SESSION_ENGINE,
    "database": settings.DATABASES["default"]["ENGINE"],
    "cache": type(caches["default"]).__name__,
    "channel_layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "allauth_counts_in_default_cache": allauth_ratelimit.cache is cache,
    "ours_count_in_default_cache": our_ratelimit.cache is cache,
    "login_throttled": settings.ACCOUNT_RATE_LIMITS["login_failed"],
    "other_caches": sorted(set(settings.CACHES) - {"default"}),
}))
"""
    process = run_python(SCALED_OUT_ENV, code)
    assert process.returncode == 0, process.stderr
    scaled = json.loads(process.stdout.splitlines()[-1])
    assert scaled == {
        "session_engine": "django.contrib.sessions.backends.db",
        "database": "django.db.backends.postgresql",
        "cache": "RedisCache",
        "channel_layer": "channels_redis.core.RedisChannelLayer",
        "allauth_counts_in_default_cache": True,
        "ours_count_in_default_cache": True,
        "login_throttled": "10/m/ip,5/300s/key",
        "other_caches": [],
    }


def test_the_pool_is_sized_from_the_environment():
    env = {"RUNTIME_POOL_SIZE": "6", "RUNTIME_HTTP_MAX_PROCESSES": "16", "RUNTIME_HTTP_SPARE_PROCESSES": "2",
           "RUNTIME_MAX_RSS_MB": "384", "RUNTIME_HTTP_IDLE_SECONDS": "2.5", "RUNTIME_WORK_DIR": "/srv/valtown-runtime"}
    code = """
import django, json
django.setup()
from runtime.config import load_config
config = load_config()
print(json.dumps([config.pool_size, config.http_max_processes, config.http_spare_processes,
                  config.max_rss_mb, config.http_idle_seconds, config.work_dir, config.heap_mb]))
"""
    process = run_python({**PRODUCTION_ENV, **env}, code)
    assert process.returncode == 0, process.stderr
    # Set ones are read; unset ones keep runtime/config.py's defaults (heap_mb 256).
    assert json.loads(process.stdout.splitlines()[-1]) == [6, 16, 2, 384, 2.5, "/srv/valtown-runtime", 256]
