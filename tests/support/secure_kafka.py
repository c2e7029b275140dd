"""A throwaway Kafka broker with secured listeners, and the client settings for each.

Listeners, all on 127.0.0.1 with certificates made at test time:
- SASL_SSL with PLAIN (users from a JAAS property) and SCRAM-SHA-256/512 (users added with
  Kafka's ConfigCommand once the broker runs);
- SSL that requires a client certificate signed by the test CA;
- PLAINTEXT, used only by the tests themselves to inspect topics independently of the
  service's security code.

With `authorizer=True` the broker authorizes every request with KRaft's StandardAuthorizer and
`allow.everyone.if.no.acl.found=false`: a SASL user may do only what an ACL allows. The
PLAINTEXT and CONTROLLER listeners' principal (User:ANONYMOUS) is the super user: the broker's
own controller traffic and the test's admin (`add_acls`, reading topics) use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.admin import CreateAclsRequest, DescribeAclsRequest

from tests.support.brokers import free_port, kafka_jars, throwaway_broker
from tests.support.certs import CertificateAuthority, Issued, make_ca

STORE_PASSWORD = "store-pass-for-tests"


@dataclass(frozen=True)
class SecureBroker:
    plaintext: str
    sasl_ssl: str
    ssl: str
    ca: CertificateAuthority
    client: Issued  # a client certificate for the SSL listener; its key is encrypted
    client_key_password: str
    log: Path

    def settings(self, mode: str, user: str = "", password: str = "") -> dict[str, Any]:
        """Settings fields for one way in: "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"
        (SASL_SSL as `user`) or "SSL" (client certificate)."""
        if mode == "SSL":
            return {
                "kafka_bootstrap_servers": self.ssl,
                "kafka_security_protocol": "SSL",
                "kafka_ssl_ca_file": self.ca.cert,
                "kafka_ssl_cert_file": self.client.cert,
                "kafka_ssl_key_file": self.client.key,
                "kafka_ssl_key_password": self.client_key_password,
            }
        return {
            "kafka_bootstrap_servers": self.sasl_ssl,
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": mode,
            "kafka_sasl_username": user,
            "kafka_sasl_password": password,
            "kafka_ssl_ca_file": self.ca.cert,
        }


def _jaas_plain(users: Mapping[str, str]) -> str:
    entries = " ".join(f'user_{name}="{password}"' for name, password in users.items())
    return f"org.apache.kafka.common.security.plain.PlainLoginModule required {entries};"


SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


def _add_scram_users(plaintext: str, users: Mapping[str, str]) -> None:
    # One mechanism per request: the broker refuses two changes of one user at once.
    for (name, password), mechanism in itertools.product(users.items(), SCRAM_MECHANISMS):
        config = f"{mechanism}=[password={password}]"
        result = subprocess.run(
            [
                "java", "-Xmx128m", "-cp", f"{kafka_jars()}/*", "kafka.admin.ConfigCommand",
                "--bootstrap-server", plaintext, "--alter", "--add-config", config,
                "--entity-type", "users", "--entity-name", name,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"could not add SCRAM user {name}:\n{result.stderr[-2000:]}")


async def _wait_for_scram(bootstrap: str, ca: Path, user: str, password: str) -> None:
    """The credentials reach the listener through the metadata log: wait until they work."""
    from service.config.tls import TlsFiles, client_context

    context = client_context(
        TlsFiles(ca, None, None, None, "", "", "", ""), verify=True, check_hostname=True
    )
    deadline = time.monotonic() + 30
    while True:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap,
            security_protocol="SASL_SSL",
            ssl_context=context,
            sasl_mechanism="SCRAM-SHA-256",
            sasl_plain_username=user,
            sasl_plain_password=password,
        )
        try:
            await admin.start()
            await admin.close()
            return
        except Exception:
            with contextlib.suppress(Exception):
                await admin.close()
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW rule for a principal: `operation` (Read, Write, Create, Describe...) on a
    literal `resource` ("topic" or "group") named `name`."""

    resource: str
    name: str
    operation: str


# Kafka's protocol codes (org.apache.kafka.common.acl / resource).
_RESOURCE = {"topic": 2, "group": 3, "cluster": 4}
_OPERATION = {"Read": 3, "Write": 4, "Create": 5, "Describe": 8, "IdempotentWrite": 12}
_ANY, _ALLOW, _LITERAL = 1, 3, 3


def add_acls(plaintext: str, acls: Mapping[str, Iterable[Acl]]) -> None:
    """Allow each user (SASL name) its ACLs, as the super user (the PLAINTEXT listener), and
    wait until the broker enforces them all. aiokafka's admin client has no create_acls, so
    this sends Kafka's CreateAcls requests (aiokafka's own protocol classes) itself."""
    asyncio.run(_add_acls(plaintext, {user: list(rules) for user, rules in acls.items()}))


async def _add_acls(plaintext: str, acls: Mapping[str, list[Acl]]) -> None:
    client = AIOKafkaClient(bootstrap_servers=plaintext)
    await client.bootstrap()
    try:
        node = client.get_random_node()
        wanted = {(user, rule) for user, rules in acls.items() for rule in rules}
        for user, rule in sorted(wanted):
            request = CreateAclsRequest(
                _RESOURCE[rule.resource], rule.name, _LITERAL, f"User:{user}", "*",
                _OPERATION[rule.operation], _ALLOW,
            )  # fmt: skip
            response = await client.send(node, request)
            for code, message in response.creation_responses:
                if code != 0:
                    raise RuntimeError(f"could not add ACL {rule} for {user}: {code} {message}")
        deadline = time.monotonic() + 30
        describe = DescribeAclsRequest(_ANY, None, _ANY, None, None, _ANY, _ANY)
        while True:
            response = await client.send(node, describe)
            count = sum(len(resource[-1]) for resource in response.resources)
            if count >= len(wanted):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the broker enforces {count} of {len(wanted)} ACLs")
            await asyncio.sleep(0.2)
    finally:
        await client.close()


AUTHORIZER = {
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "allow.everyone.if.no.acl.found": "false",
    "super.users": "User:ANONYMOUS",
}


@contextlib.contextmanager
def secure_broker(
    directory: Path,
    plain_users: Mapping[str, str],
    scram_users: Mapping[str, str],
    client_key_password: str = "client-key-pass",
    *,
    authorizer: bool = False,
) -> Iterator[SecureBroker]:
    ca = make_ca(directory)
    server = ca.issue("broker", "localhost", server=True)
    keystore = ca.pkcs12(server, STORE_PASSWORD)
    truststore = ca.truststore(STORE_PASSWORD)
    client = ca.issue("client", "sink-client", server=False, key_password=client_key_password)
    port, controller, sasl_port, ssl_port = (free_port() for _ in range(4))
    listeners = (
        f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller},"
        f"SASL_SSL://127.0.0.1:{sasl_port},SSL://127.0.0.1:{ssl_port}"
    )
    properties = {
        "listeners": listeners,
        "advertised.listeners": listeners,
        "listener.security.protocol.map": (
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL"
        ),
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        "listener.name.sasl_ssl.plain.sasl.jaas.config": _jaas_plain(plain_users),
        "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": SCRAM_MODULE,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": SCRAM_MODULE,
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(keystore),
        "ssl.keystore.password": STORE_PASSWORD,
        "ssl.key.password": STORE_PASSWORD,
        "ssl.truststore.type": "PKCS12",
        "ssl.truststore.location": str(truststore),
        "ssl.truststore.password": STORE_PASSWORD,
        "listener.name.ssl.ssl.client.auth": "required",
    }
    if authorizer:
        properties.update(AUTHORIZER)
    with throwaway_broker(properties, port=port, controller_port=controller) as broker:
        sasl_ssl = f"127.0.0.1:{sasl_port}"
        if scram_users:
            _add_scram_users(broker.bootstrap, scram_users)
            user, password = next(iter(scram_users.items()))
            asyncio.run(_wait_for_scram(sasl_ssl, ca.cert, user, password))
        yield SecureBroker(
            plaintext=broker.bootstrap,
            sasl_ssl=sasl_ssl,
            ssl=f"127.0.0.1:{ssl_port}",
            ca=ca,
            client=client,
            client_key_password=client_key_password,
            log=broker.log,
        )
