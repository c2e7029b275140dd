"""A variable with the service's prefix that no setting reads is warned about, with the
closest setting; other programs' variables sharing a prefix are not."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config.settings import Settings
from service.config.unknown import OTHER_PROGRAMS, SERVICE_PREFIXES, warnings_for

REQUIRED = {
    "POSTGRES_USER": "inv",
    "POSTGRES_PASSWORD": "secret-value-9",
    "POSTGRES_DB": "inventory",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
}


def test_every_setting_has_a_service_prefix() -> None:
    """Otherwise a typo of that setting could never be warned about."""
    outside = [
        name for name in Settings.model_fields if not name.upper().startswith(SERVICE_PREFIXES)
    ]
    assert not outside, f"add their prefix to SERVICE_PREFIXES: {outside}"


def test_a_typo_is_named_with_the_closest_setting(tmp_path: Path) -> None:
    environ = {"KAFKA_TOPCI": "orders", "PATH": "/bin", "kafka_group_idd": "x"}
    assert warnings_for(environ, tmp_path / "none") == [
        "KAFKA_GROUP_IDD (in the environment) is not a setting of this service; did you mean "
        "KAFKA_GROUP_ID?",
        "KAFKA_TOPCI (in the environment) is not a setting of this service; did you mean "
        "KAFKA_TOPIC?",
    ]


def test_a_typo_in_the_env_file_is_named_with_the_file_and_never_its_value(
    tmp_path: Path,
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("POSTGRES_PASSWROD=secret-value-9\nPOSTGRES_DB=inventory\n")
    (line,) = warnings_for({}, env_file)
    assert line == (
        f"POSTGRES_PASSWROD (in {env_file}) is not a setting of this service; did you mean "
        "POSTGRES_PASSWORD?"
    )
    assert "secret-value-9" not in line


def test_known_settings_other_programs_and_other_prefixes_are_not_warned_about(
    tmp_path: Path,
) -> None:
    environ = {
        **REQUIRED,
        **dict.fromkeys(OTHER_PROGRAMS, "x"),
        "http_proxy": "http://127.0.0.1:3128",
        "PGPASSWORD": "x",
        "CONSUMER_HTTP_PORT": "8080",  # docker-compose.yml's, in .env.example
        "TEST_POSTGRES_DB": "x",
        "LOCAL_STACK": "x",
    }
    assert warnings_for(environ, tmp_path / "none") == []


def test_env_example_names_no_unknown_setting() -> None:
    example = Path(__file__).resolve().parents[3] / ".env.example"
    assert warnings_for({}, example) == []


def test_the_cli_warns_at_start_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.cli import main as cli

    monkeypatch.chdir(tmp_path)
    for name in [*REQUIRED, "POSTGRES_MIGRATION_USER", "POSTGRES_MIGRATION_PASSWORD"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAFKA_TOPCI", "orders")
    # No settings needed beyond a broker nobody listens on: the warning comes first.
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    cli.main(["create-topics"])
    warnings = [line for line in capsys.readouterr().err.splitlines() if "KAFKA_TOPCI" in line]
    assert len(warnings) == 1, warnings
    assert " WARNING service.cli: KAFKA_TOPCI (in the environment) is not a setting" in warnings[0]
    assert warnings[0].endswith("did you mean KAFKA_TOPIC?")
