"""deploy/kubernetes-tls (docs/how-to/deploy-kubernetes.md) gives both containers settings the
service accepts, SASL_SSL with SCRAM to Kafka and verify-full to PostgreSQL, with every
certificate file where the Secret the page tells you to create is mounted, and the Kafka login
from the Secret only.

No cluster here: the overlay is merged onto the base as kustomize's strategic merge does for
these manifests (containers, env and volumes by name, mounts by path), then each container's
environment is built as the kubelet would and handed to `Settings` and to the service's own
TLS contexts, with the CA files the Secret would hold made at test time.
"""

from __future__ import annotations

import os
import re
import ssl
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from service.config.settings import Settings
from service.kafka.security import ssl_context
from service.postgres.tls import connect_args
from tests.support.certs import make_ca

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "kubernetes"
OVERLAY = ROOT / "deploy" / "kubernetes-tls"
PAGE = ROOT / "docs" / "how-to" / "deploy-kubernetes.md"
FILE_SETTINGS = ("KAFKA_SSL_CA_FILE", "POSTGRES_SSLROOTCERT")


def load(path: Path) -> dict[str, Any]:
    document = YAML(typ="safe").load(path.read_text())
    assert isinstance(document, dict)
    return document


def merge_by(key: str, base: list[dict[str, Any]], patch: list[dict[str, Any]]) -> list[Any]:
    merged = {item[key]: dict(item) for item in base}
    for item in patch:
        merged[item[key]] = merge(merged.get(item[key], {}), item)
    return list(merged.values())


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Strategic merge as kustomize applies it to these manifests."""
    keys = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name"}
    out = dict(base)
    for name, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(name), dict):
            out[name] = merge(out[name], value)
        elif name in keys or name == "volumeMounts":
            out[name] = merge_by(keys.get(name, "mountPath"), out.get(name, []), value)
        else:
            out[name] = value
    return out


def rendered() -> dict[str, dict[str, Any]]:
    """The overlay's resources by kind, after its patches."""
    kustomization = load(OVERLAY / "kustomization.yaml")
    assert kustomization["resources"] == ["../kubernetes"]
    documents = [load(BASE / name) for name in load(BASE / "kustomization.yaml")["resources"]]
    resources = {document["kind"]: document for document in documents}
    for patch in kustomization["patches"]:
        document = load(OVERLAY / patch["path"])
        target = resources[document["kind"]]
        assert document["metadata"]["name"] == target["metadata"]["name"], patch["path"]
        resources[document["kind"]] = merge(target, document)
    return resources


def documented_tls_secret() -> tuple[str, set[str]]:
    """The Secret the page tells you to create, and its keys (`--from-file=KEY=path`)."""
    text = PAGE.read_text()
    name = re.search(r"kubectl create secret generic (\S+)", text)
    assert name, "the page no longer creates the certificates' Secret"
    return name.group(1), set(re.findall(r"--from-file=([^=\s]+)=", text))


def container_env(
    resources: dict[str, dict[str, Any]], container: dict[str, Any]
) -> dict[str, str]:
    """The container's environment as the kubelet builds it (envFrom, then env)."""
    config = resources["ConfigMap"]["data"]
    secret = resources["Secret"]["stringData"]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(config if "configMapRef" in source else secret)
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "secretKeyRef" in item["valueFrom"]:
            env[item["name"]] = secret[item["valueFrom"]["secretKeyRef"]["key"]]
        else:
            env[item["name"]] = "inventory-sink-0"  # a fieldRef: the pod's name
    return {name: str(value) for name, value in env.items()}


def mounted_files(spec: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    """Path in the container -> key of the certificates' Secret, for its mounts of it."""
    secret_name, keys = documented_tls_secret()
    volumes = {v["name"]: v for v in spec["volumes"]}
    files = {}
    for mount in container.get("volumeMounts", []):
        source = volumes[mount["name"]].get("secret", {})
        if source.get("secretName") == secret_name:
            assert mount.get("readOnly"), f"{container['name']}: mount {mount} read-only"
            files.update({f"{mount['mountPath']}/{key}": key for key in keys})
    return files


CONTAINERS = ("migrate", "consumer")


@pytest.fixture(scope="module")
def ca_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the certificates' Secret would hold: a CA for each of its keys."""
    directory = tmp_path_factory.mktemp("tls-secret")
    ca = make_ca(directory / "ca")
    for key in documented_tls_secret()[1]:
        (directory / key).write_bytes(ca.cert.read_bytes())
    return directory


@pytest.mark.parametrize("name", CONTAINERS)
def test_each_container_gets_settings_the_service_accepts(
    name: str, ca_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = rendered()
    spec = resources["StatefulSet"]["spec"]["template"]["spec"]
    (container,) = [c for c in spec["initContainers"] + spec["containers"] if c["name"] == name]
    env = container_env(resources, container)
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["POSTGRES_SSLMODE"] == "verify-full"
    files = mounted_files(spec, container)
    for setting in FILE_SETTINGS:
        assert env[setting] in files, f"{name}: {setting}={env[setting]} is not mounted ({files})"
        env[setting] = str(ca_files / files[env[setting]])
    for variable in list(os.environ):
        if variable.startswith(("POSTGRES_", "KAFKA_")):
            monkeypatch.delenv(variable)
    fields = Settings.model_fields
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, **{k.lower(): v for k, v in env.items() if k.lower() in fields}
    )
    kafka, postgres = ssl_context(settings), connect_args(settings)["ssl"]
    assert isinstance(kafka, ssl.SSLContext) and kafka.verify_mode == ssl.CERT_REQUIRED
    assert isinstance(postgres, ssl.SSLContext) and postgres.check_hostname
    assert settings.kafka_sasl_password is not None


def test_the_kafka_login_comes_from_the_secret_only() -> None:
    resources = rendered()
    assert not {"KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"} & set(resources["ConfigMap"]["data"])
    spec = resources["StatefulSet"]["spec"]["template"]["spec"]
    (consumer,) = [c for c in spec["containers"] if c["name"] == "consumer"]
    from_secret = {e["name"] for e in consumer["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert {"KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"} <= from_secret
    # Least privilege holds in the overlay too: the consumer never gets the owner's password.
    assert "POSTGRES_MIGRATION_PASSWORD" not in container_env(resources, consumer)
