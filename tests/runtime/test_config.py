"""The pool's settings: defaults that work anywhere, RUNTIME_* Django settings when set."""

import pytest

from runtime.config import Limits, PoolConfig, load_config


def test_the_defaults_follow_the_issue():
    config = PoolConfig()

    assert config.default_limits == Limits(timeout_seconds=10, max_log_bytes=1_000_000, max_result_bytes=1_000_000)
    assert config.heap_mb == 256
    assert config.block_ipv6 is True


def test_it_reads_runtime_settings_from_django(settings):
    settings.RUNTIME_POOL_SIZE = 5
    settings.RUNTIME_MODULE_HOST = "127.0.0.1:8000"
    settings.RUNTIME_IMPORT_HOSTS = ["esm.sh"]
    settings.RUNTIME_TIMEOUT_SECONDS = 3
    settings.RUNTIME_MAX_RSS_MB = 300

    config = load_config()

    assert config.pool_size == 5
    assert config.module_host == "127.0.0.1:8000"
    assert config.import_hosts == ("esm.sh",)
    assert config.default_limits.timeout_seconds == 3
    assert config.max_rss_mb == 300


def test_unset_settings_keep_their_defaults(settings):
    from django.conf import settings as django_settings

    # dir() of pytest-django's wrapper lists nothing: look at the real settings.
    for name in dir(django_settings):
        if name.startswith("RUNTIME_"):
            delattr(settings, name)

    assert load_config() == PoolConfig()


@pytest.mark.parametrize("name", ["RUNTIME_POOL_SIZE", "RUNTIME_MAX_THREADS", "RUNTIME_SANDBOX_GID"])
def test_every_pool_field_has_a_setting(name):
    from runtime.config import SETTINGS

    assert name in SETTINGS


def test_http_and_host_call_settings_come_from_django_too(settings):
    settings.RUNTIME_HTTP_IDLE_SECONDS = 2.5
    settings.RUNTIME_HTTP_MAX_PROCESSES = 3
    settings.RUNTIME_MAX_HOST_CALLS = 7

    config = load_config()

    assert config.http_idle_seconds == 2.5
    assert config.http_max_processes == 3
    assert config.default_limits.max_host_calls == 7
