"""Configuration comes only from the environment, with defaults and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.config import ConfigurationError, Settings, environment_names, load_settings


def test_defaults_apply_when_nothing_is_set():
    """An empty environment yields the documented defaults."""
    assert load_settings({}) == Settings()


def test_values_are_read_and_converted():
    """Numbers and booleans are parsed from their environment variables."""
    settings = load_settings({"EMONEY_DB_POOL_MAX_SIZE": "16", "EMONEY_REFLECTION": "on", "EMONEY_SHUTDOWN_GRACE_S": "2.5"})
    assert settings.database_pool_max_size == 16
    assert settings.reflection_enabled is True
    assert settings.shutdown_grace_s == 2.5


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("EMONEY_DB_POOL_MAX_SIZE", "many", "must be a number"),
        ("EMONEY_DB_POOL_MAX_SIZE", "0", "must be positive"),
        ("EMONEY_REFLECTION", "maybe", "true or false"),
        ("EMONEY_GRPC_ADDRESS", "nocolon", "host:port"),
        ("EMONEY_GRPC_ADDRESS", "127.0.0.1:99999", "host:port"),
        ("EMONEY_LOG_LEVEL", "LOUD", "EMONEY_LOG_LEVEL"),
        ("EMONEY_S3_PUBLIC_URL", "files.example.com", "EMONEY_S3_PUBLIC_URL"),
        ("EMONEY_S3_PUBLIC_URL", "ftp://files.example.com", "EMONEY_S3_PUBLIC_URL"),
        ("EMONEY_S3_PUBLIC_URL", "https://files.example.com/receipts", "EMONEY_S3_PUBLIC_URL"),
        ("EMONEY_S3_PUBLIC_URL", "https://files.example.com:port", "EMONEY_S3_PUBLIC_URL"),
    ],
)
def test_bad_values_fail_fast_naming_the_variable(variable, value, message):
    """A bad value is a ConfigurationError that names the variable, at start-up."""
    with pytest.raises(ConfigurationError, match=message):
        load_settings({variable: value})


def test_pool_bounds_are_consistent():
    """A minimum pool size above the maximum is refused."""
    with pytest.raises(ConfigurationError, match="MIN_SIZE"):
        load_settings({"EMONEY_DB_POOL_MIN_SIZE": "9", "EMONEY_DB_POOL_MAX_SIZE": "4"})


def test_secrets_are_not_in_the_repr():
    """Tokens and keys never appear when settings are printed or logged."""
    text = repr(load_settings({"VAULT_TOKEN": "s.supersecret", "S3_SECRET_KEY": "hunter2"}))
    assert "supersecret" not in text and "hunter2" not in text


def test_every_setting_has_an_environment_variable():
    """No setting is configurable only in code."""
    assert set(environment_names()) == set(Settings.__dataclass_fields__)


def test_reflection_is_off_unless_enabled():
    """Production default: the server does not advertise its API unless EMONEY_REFLECTION says so."""
    assert load_settings({}).reflection_enabled is False


def test_the_public_object_store_address_is_read():
    """EMONEY_S3_PUBLIC_URL (where apps fetch pre-signed links) and the region they are signed for."""
    settings = load_settings({"EMONEY_S3_PUBLIC_URL": "https://files.example.com", "EMONEY_S3_REGION": "eu-west-1"})
    assert (settings.s3_public_url, settings.s3_region) == ("https://files.example.com", "eu-west-1")
    assert load_settings({}).s3_public_url == ""


def test_every_variable_is_in_the_readmes_configuration_table():
    """The README's Configuration table names every variable the server reads (EMONEY_S3_PUBLIC_URL too)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    assert [variable for variable in environment_names().values() if f"`{variable}`" not in table] == []
