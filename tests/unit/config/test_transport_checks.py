"""Transport security settings: checked at start-up, mapped once for every client."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
)
from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from service.cli.explain import explain
from service.config.settings import ConfigurationError, Settings, load_settings
from service.kafka.refusal import KafkaAccessDenied
from service.kafka.security import broker_security, client_kwargs
from service.postgres.tls import connect_args
from tests.support.certs import CertificateAuthority, Issued, make_ca

SECRET = "Zq7-unit-s3cret-Xw9"
KEY_PASSWORD = "Zq7-key-s3cret-Xw9"
REQUIRED = {
    "POSTGRES_USER": "inv",
    "POSTGRES_PASSWORD": SECRET,
    "POSTGRES_DB": "inventory",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9093",
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertificateAuthority, Issued]:
    ca = make_ca(tmp_path_factory.mktemp("pki"))
    client = ca.issue("client", "sink", server=False, key_password=KEY_PASSWORD)
    return ca, client


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    for name in list(Settings.model_fields):
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)


def settings_from(monkeypatch: pytest.MonkeyPatch, **env: object) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name.upper(), str(value))
    return load_settings()


def config_error(monkeypatch: pytest.MonkeyPatch, **env: object) -> str:
    with pytest.raises(ConfigurationError) as error:
        settings_from(monkeypatch, **env)
    return str(error.value)


def test_defaults_are_plaintext_kafka_and_prefer_for_postgres(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_from(monkeypatch)
    assert client_kwargs(settings) == {"security_protocol": "PLAINTEXT"}
    assert broker_security(settings) is None
    assert connect_args(settings) == {"ssl": "prefer"}


def test_empty_variables_mean_unset_as_in_env_example(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(
        monkeypatch,
        kafka_sasl_mechanism="",
        kafka_sasl_username="",
        kafka_sasl_password="",
        kafka_ssl_ca_file="",
        postgres_sslrootcert=" ",
    )
    assert client_kwargs(settings) == {"security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize(
    ("mechanism", "faststream_class"),
    [("PLAIN", SASLPlaintext), ("SCRAM-SHA-256", SASLScram256), ("SCRAM-SHA-512", SASLScram512)],
)
def test_sasl_ssl_reaches_aiokafka_and_faststream_alike(
    monkeypatch: pytest.MonkeyPatch,
    pki: tuple[CertificateAuthority, Issued],
    mechanism: str,
    faststream_class: type[BaseSecurity],
) -> None:
    ca, _ = pki
    settings = settings_from(
        monkeypatch,
        kafka_security_protocol="sasl_ssl",  # case does not matter
        kafka_sasl_mechanism=mechanism.lower(),
        kafka_sasl_username="sink",
        kafka_sasl_password=SECRET,
        kafka_ssl_ca_file=ca.cert,
    )
    kwargs = client_kwargs(settings)
    context = kwargs.pop("ssl_context")
    assert kwargs == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "sink",
        "sasl_plain_password": SECRET,
    }
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
    security = broker_security(settings)
    assert type(security) is faststream_class
    # What FastStream hands aiokafka is what the service's own clients get.
    parsed = parse_security(security)
    assert {k: parsed[k] for k in kwargs} == kwargs
    assert parsed["ssl_context"].verify_mode == ssl.CERT_REQUIRED


def test_sasl_plaintext_has_no_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(
        monkeypatch,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="sink",
        kafka_sasl_password=SECRET,
    )
    assert "ssl_context" not in client_kwargs(settings)
    assert parse_security(broker_security(settings))["security_protocol"] == "SASL_PLAINTEXT"


def test_ssl_with_an_encrypted_client_key(
    monkeypatch: pytest.MonkeyPatch, pki: tuple[CertificateAuthority, Issued]
) -> None:
    ca, client = pki
    settings = settings_from(
        monkeypatch,
        kafka_security_protocol="SSL",
        kafka_ssl_ca_file=ca.cert,
        kafka_ssl_cert_file=client.cert,
        kafka_ssl_key_file=client.key,
        kafka_ssl_key_password=KEY_PASSWORD,
        kafka_ssl_check_hostname="false",
    )
    kwargs = client_kwargs(settings)
    assert kwargs["security_protocol"] == "SSL"
    assert kwargs["ssl_context"].check_hostname is False
    assert kwargs["ssl_context"].verify_mode == ssl.CERT_REQUIRED  # still verified
    assert parse_security(broker_security(settings))["security_protocol"] == "SSL"


def test_a_wrong_key_password_names_the_variable_not_the_password(
    monkeypatch: pytest.MonkeyPatch, pki: tuple[CertificateAuthority, Issued]
) -> None:
    ca, client = pki
    settings = settings_from(
        monkeypatch,
        kafka_security_protocol="SSL",
        kafka_ssl_ca_file=ca.cert,
        kafka_ssl_cert_file=client.cert,
        kafka_ssl_key_file=client.key,
        kafka_ssl_key_password=SECRET,
    )
    with pytest.raises(ConfigurationError) as error:
        client_kwargs(settings)
    message = str(error.value)
    assert "KAFKA_SSL_KEY_PASSWORD" in message and "KAFKA_SSL_CERT_FILE" in message
    assert SECRET not in message
    assert explain(error.value) == message  # the CLI prints it as it is


def test_a_certificate_that_is_not_pem_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    settings = settings_from(
        monkeypatch, postgres_sslmode="verify-full", postgres_sslrootcert=bogus
    )
    with pytest.raises(ConfigurationError, match=r"POSTGRES_SSLROOTCERT=.*could not be loaded"):
        connect_args(settings)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"kafka_security_protocol": "SASL_SSL"},
            [
                "KAFKA_SASL_MECHANISM is not set, but KAFKA_SECURITY_PROTOCOL=SASL_SSL needs it",
                "KAFKA_SASL_USERNAME is not set",
                "KAFKA_SASL_PASSWORD is not set",
            ],
        ),
        (
            {"kafka_sasl_username": "sink", "kafka_sasl_password": SECRET},
            [
                "KAFKA_SASL_USERNAME is set, but KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use "
                "SASL and would ignore it; set KAFKA_SECURITY_PROTOCOL=SASL_SSL",
                "KAFKA_SASL_PASSWORD is set, but",
            ],
        ),
        (
            {
                "kafka_security_protocol": "SASL_PLAINTEXT",
                "kafka_sasl_mechanism": "PLAIN",
                "kafka_sasl_username": "sink",
                "kafka_sasl_password": SECRET,
                "kafka_ssl_ca_file": "{ca}",
            },
            ["KAFKA_SSL_CA_FILE is set, but KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT does not use"],
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_key_file": "{ca}"},
            ["KAFKA_SSL_KEY_FILE is set without KAFKA_SSL_CERT_FILE"],
        ),
        (
            {"postgres_sslmode": "require", "postgres_sslrootcert": "{ca}"},
            ["POSTGRES_SSLROOTCERT is set, but POSTGRES_SSLMODE=require does not verify"],
        ),
        (
            {"postgres_sslmode": "prefer", "postgres_sslcert": "{ca}", "postgres_sslkey": "{ca}"},
            ["POSTGRES_SSLCERT is set, but a client certificate needs POSTGRES_SSLMODE=require"],
        ),
        (
            {"postgres_sslmode": "disable", "postgres_sslpassword": SECRET},
            ["POSTGRES_SSLPASSWORD is set, but POSTGRES_SSLMODE=disable turns TLS off"],
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_ca_file": "/no/such/ca.pem"},
            ["KAFKA_SSL_CA_FILE='/no/such/ca.pem' is invalid: Path does not point to a file"],
        ),
        (
            {"kafka_sasl_mechanism": "GSSAPI"},
            ["KAFKA_SASL_MECHANISM='GSSAPI' is invalid: Input should be 'PLAIN'"],
        ),
        (
            {"postgres_sslmode": "verify_full"},
            ["POSTGRES_SSLMODE='verify_full' is invalid: Input should be 'disable'"],
        ),
    ],
)
def test_contradictions_stop_start_up_with_the_variable_and_the_fix(
    monkeypatch: pytest.MonkeyPatch,
    pki: tuple[CertificateAuthority, Issued],
    env: dict[str, str],
    expected: list[str],
) -> None:
    ca, _ = pki
    message = config_error(monkeypatch, **{k: v.format(ca=ca.cert) for k, v in env.items()})
    lines = message.splitlines()
    assert len(lines) == len(expected), message
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(f"configuration error: {start}"), message
    assert SECRET not in message  # the cross-setting check's input holds every password


def test_postgres_modes_map_to_asyncpg(
    monkeypatch: pytest.MonkeyPatch, pki: tuple[CertificateAuthority, Issued]
) -> None:
    ca, client = pki
    for mode in ("disable", "allow", "prefer"):
        monkeypatch.setenv("POSTGRES_SSLMODE", mode)
        assert connect_args(load_settings()) == {"ssl": mode}
    monkeypatch.setenv("POSTGRES_SSLMODE", "require")
    require = connect_args(load_settings())["ssl"]
    assert (require.verify_mode, require.check_hostname) == (ssl.CERT_NONE, False)
    monkeypatch.setenv("POSTGRES_SSLROOTCERT", str(ca.cert))
    monkeypatch.setenv("POSTGRES_SSLCERT", str(client.cert))
    monkeypatch.setenv("POSTGRES_SSLKEY", str(client.key))
    monkeypatch.setenv("POSTGRES_SSLPASSWORD", KEY_PASSWORD)
    for mode, check_hostname in (("verify-ca", False), ("VERIFY-FULL", True)):
        monkeypatch.setenv("POSTGRES_SSLMODE", mode)
        context = connect_args(load_settings())["ssl"]
        assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, check_hostname)


def test_settings_never_show_secrets_in_their_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(
        monkeypatch,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="sink",
        kafka_sasl_password=SECRET,
        postgres_sslmode="disable",
    )
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())
    assert SECRET not in repr(broker_security(settings))


def test_tls_failures_are_explained_with_the_settings_to_fix() -> None:
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    verify.verify_message = "Hostname mismatch, certificate is not valid for '127.0.0.1'."
    wrapped = RuntimeError("cannot reach PostgreSQL")
    wrapped.__cause__ = verify
    message = explain(wrapped)
    assert message is not None
    assert "Hostname mismatch" in message and "POSTGRES_SSLROOTCERT" in message
    assert "POSTGRES_HOST" in message
    upgrade = ConnectionError('PostgreSQL server at "127.0.0.1:5" rejected SSL upgrade')
    assert "lower POSTGRES_SSLMODE" in (explain(upgrade) or "")


def test_every_setting_is_explained_in_env_example() -> None:
    example = (Path(__file__).resolve().parents[3] / ".env.example").read_text()
    documented = {line.split("=", 1)[0] for line in example.splitlines() if "=" in line}
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in documented]
    assert missing == []


@pytest.mark.parametrize(
    ("error", "names"),
    [
        (
            KafkaAccessDenied("Describe", "group", "sink"),
            "Kafka denied this client Describe on group 'sink'; allow its user "
            "(KAFKA_SASL_USERNAME, or the client certificate's name) Describe on group sink",
        ),
        (GroupAuthorizationFailedError("sink"), "Read on group KAFKA_GROUP_ID"),
        (TopicAuthorizationFailedError("events"), "Read on the topics it consumes"),
        (ClusterAuthorizationFailedError(), "Write on the topic it publishes to"),
    ],
)
def test_a_missing_kafka_acl_is_one_line_naming_it(error: Exception, names: str) -> None:
    wrapped = RuntimeError("while starting")
    wrapped.__cause__ = error
    message = explain(wrapped)
    assert message is not None and names in message and "\n" not in message
    assert message.endswith("(README: Kafka ACLs)")
