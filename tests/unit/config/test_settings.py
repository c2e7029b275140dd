"""Settings: env-only configuration, clear one-line errors."""

from __future__ import annotations

import json

import pytest

from service.config.settings import ConfigurationError, load_settings

REQUIRED = {
    "POSTGRES_USER": "inv",
    "POSTGRES_PASSWORD": "p@ss:w/rd#1",
    "POSTGRES_DB": "inventory",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    names = [*REQUIRED, "POSTGRES_PORT", "KAFKA_TOPIC", "LOG_LEVEL", "LOG_FORMAT", "POSTGRES_HOST"]
    for name in [*names, "POSTGRES_MIGRATION_USER", "POSTGRES_MIGRATION_PASSWORD"]:
        monkeypatch.delenv(name, raising=False)


def test_defaults_and_escaped_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.kafka_topic == "inventory.product-events"
    assert settings.kafka_dlq_topic == "inventory.product-events.dlq"
    assert settings.kafka_group_id == "inventory-sink"
    assert settings.database_url == (
        "postgresql+asyncpg://inv:p%40ss%3Aw%2Frd%231@127.0.0.1:5432/inventory"
    )


def test_dotenv_file_is_read_and_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    lines = [f"{k}={v}" for k, v in REQUIRED.items()] + ["KAFKA_TOPIC=from-file"]
    with open(".env", "w") as handle:
        handle.write("\n".join(lines) + "\nPOSTGRES_PORT=6000\n")
    monkeypatch.setenv("POSTGRES_PORT", "7000")
    settings = load_settings()
    assert settings.kafka_topic == "from-file"
    assert settings.postgres_port == 7000


def test_a_missing_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        if name != "POSTGRES_PASSWORD":
            monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    assert str(error.value).splitlines() == [
        "configuration error: POSTGRES_PASSWORD is not set; set it in the environment or in "
        ".env (Password of POSTGRES_USER)"
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [("POSTGRES_PORT", "fivefourthreetwo"), ("POSTGRES_PORT", "70000"), ("LOG_LEVEL", "LOUD")],
)
def test_a_malformed_variable_is_named_with_its_value(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    for required, good in REQUIRED.items():
        monkeypatch.setenv(required, good)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    (line,) = str(error.value).splitlines()
    assert line.startswith(f"configuration error: {name}={value!r} is invalid: ")


def test_the_cli_prints_the_lines_then_one_error_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.cli import main as cli

    assert cli.main(["lag"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line for line in lines if line.startswith("configuration error: ")] == lines[:-1]
    assert {line.split()[2] for line in lines[:-1]} == {
        "POSTGRES_USER",
        "POSTGRES_PASSWORD",
        "POSTGRES_DB",
        "KAFKA_BOOTSTRAP_SERVERS",
    }
    assert lines[-1] == (
        "error: the settings have 4 problems (listed above); fix them in the environment or in .env"
    )


def test_one_missing_setting_is_the_error_line_itself(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.cli import main as cli

    assert cli.main(["dead-letters"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: KAFKA_BOOTSTRAP_SERVERS is not set; set it in the environment or in .env (The "
        "brokers: host:port, or several separated by commas, e.g. "
        "kafka-1:9092,kafka-2:9092,kafka-3:9092. Every Kafka client is given the whole list)"
    ]


@pytest.mark.parametrize(
    ("command", "asked"),
    [
        # Database-only: no Kafka setting is asked for.
        (["migrate"], {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}),
        (["show"], {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}),
        # Kafka-only: no database setting.
        (["publish", "--sample"], {"KAFKA_BOOTSTRAP_SERVERS"}),
        (["create-topics"], {"KAFKA_BOOTSTRAP_SERVERS"}),
        (["dead-letters", "--count"], {"KAFKA_BOOTSTRAP_SERVERS"}),
        (["dead-letters", "replay", "--all", "--dry-run"], {"KAFKA_BOOTSTRAP_SERVERS"}),
        # Both: the log next to the stored positions.
        (["lag"], {*REQUIRED}),
        (["positions"], {*REQUIRED}),
        (["run"], {*REQUIRED}),
    ],
)
def test_each_command_asks_only_for_the_settings_it_uses(
    capsys: pytest.CaptureFixture[str], command: list[str], asked: set[str]
) -> None:
    from service.cli import main as cli

    assert cli.main(command) == 2
    err = capsys.readouterr().err
    named = {name for name in REQUIRED if f"{name} is not set" in err}
    assert named == asked, err


def test_the_contract_needs_no_settings(capsys: pytest.CaptureFixture[str]) -> None:
    from service.cli import main as cli

    assert cli.main(["contract"]) == 0
    assert json.loads(capsys.readouterr().out)  # a schema, with nothing configured


def test_a_kafka_only_command_reads_kafka_settings_without_any_database_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from service.config.settings import BrokerSettings, PostgresSettings

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    monkeypatch.setenv("POSTGRES_PORT", "not a port")  # not read, so not refused
    settings = load_settings(BrokerSettings)
    assert settings.kafka_brokers == ["127.0.0.1:9092"]
    assert not isinstance(settings, PostgresSettings)


def test_a_configuration_error_is_one_json_record_with_log_format_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.cli import main as cli

    monkeypatch.setenv("LOG_FORMAT", "json")
    assert cli.main(["show"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    record = json.loads(line)
    assert record["level"] == "ERROR" and record["exit_code"] == 2
    assert record["message"].startswith("the settings have 3 problems (listed above)")
    assert [problem.split()[2] for problem in record["problems"]] == [
        "POSTGRES_USER",
        "POSTGRES_PASSWORD",
        "POSTGRES_DB",
    ]


def test_every_setting_has_a_description() -> None:
    from service.config.settings import Settings

    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert not missing, f"give these settings a description=: {missing}"


@pytest.mark.parametrize(
    ("given", "brokers"),
    [
        ("127.0.0.1:9092", ["127.0.0.1:9092"]),
        (
            "127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094",
            ["127.0.0.1:29092", "127.0.0.1:29093", "127.0.0.1:29094"],
        ),
        (" kafka-1:9092 , kafka-2:9092 ", ["kafka-1:9092", "kafka-2:9092"]),
        ("[::1]:9092,kafka:9093", ["[::1]:9092", "kafka:9093"]),
    ],
)
def test_the_broker_list_is_parsed_into_host_port_entries(
    monkeypatch: pytest.MonkeyPatch, given: str, brokers: list[str]
) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", given)
    settings = load_settings()
    assert settings.kafka_brokers == brokers
    # The variable itself is kept in one spelling: what child processes are handed.
    assert settings.kafka_bootstrap_servers == ",".join(brokers)


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("127.0.0.1:9092,,127.0.0.1:9093", "entry 2 of 3 is empty"),
        ("127.0.0.1:9092,", "entry 2 of 2 is empty"),
        (" , ", "entry 1 of 2 is empty"),
        ("127.0.0.1", "entry 1 of 1 ('127.0.0.1') is not host:port"),
        ("127.0.0.1:9092,:9093", "entry 2 of 2 (':9093') is not host:port"),
        ("kafka:http", "entry 1 of 1 ('kafka:http') has no port between 1 and 65535"),
        ("kafka:70000", "entry 1 of 1 ('kafka:70000') has no port between 1 and 65535"),
    ],
)
def test_a_malformed_broker_list_is_refused_in_one_line_with_an_example(
    monkeypatch: pytest.MonkeyPatch, given: str, problem: str
) -> None:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", given)
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    assert str(error.value).splitlines() == [
        f"configuration error: KAFKA_BOOTSTRAP_SERVERS={given!r} is invalid: {problem}; give a "
        "comma-separated list of host:port, e.g. kafka-1:9092,kafka-2:9092,kafka-3:9092; fix it "
        "in the environment or in .env"
    ]
