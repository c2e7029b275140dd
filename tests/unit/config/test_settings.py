"""Settings: env-only configuration, clear one-line errors."""

from __future__ import annotations

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
    for name in [*REQUIRED, "POSTGRES_PORT", "KAFKA_TOPIC", "LOG_LEVEL", "POSTGRES_HOST"]:
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
        ".env (see .env.example)"
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


def test_the_cli_prints_the_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.cli import main as cli
    from service.config import settings as config

    config.get_settings.cache_clear()
    assert cli.main(["show"]) == 2
    err = capsys.readouterr().err
    assert "POSTGRES_USER is not set" in err
    assert "KAFKA_BOOTSTRAP_SERVERS is not set" in err


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
        "in the environment or in .env (see .env.example)"
    ]
