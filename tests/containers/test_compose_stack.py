"""The image and docker-compose.yml, for real (scripts/container-test runs these in order).

One compose project for the module: a migrate that fails first, then the real stack, the
README's sample table, a graceful stop, and `down` then `up` with the volumes kept.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from datetime import UTC, datetime

from service.postgres.schema_gate import head_revision
from tests.containers.conftest import HERE, ROOT, Compose, docker

IMAGE = "inventory-sink:local"
UID = "10001"
GRACE_S = 45  # docker-compose.yml: consumer stop_grace_period


def readme_table() -> list[str]:
    """The table README.md shows for the sample events (Quick start)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  id  name"))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("(3 rows)"))
    return [line.rstrip() for line in lines[start : end + 1]]


def table(stack: Compose) -> list[str]:
    out = stack.exec("consumer", "python", "-m", "service", "show").stdout
    return [line.rstrip() for line in out.splitlines() if line.strip()]


def wait_for_table(stack: Compose, expected: list[str], timeout: float = 90) -> list[str]:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        seen = table(stack)
        if seen == expected:
            return seen
        time.sleep(2)
    shown, wanted = "\n".join(seen), "\n".join(expected)
    raise AssertionError(f"table differs:\n{shown}\nexpected:\n{wanted}")


def http_status(port: str, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def parse_time(value: str) -> datetime:
    # Docker's RFC 3339 with nanoseconds: keep microseconds.
    head, _, rest = value.partition(".")
    fraction = rest.rstrip("Z")[:6] if rest else "0"
    return datetime.fromisoformat(f"{head}.{fraction.ljust(6, '0')}").replace(tzinfo=UTC)


def test_image_builds_from_the_dockerfile_with_one_copy_of_the_code(stack: Compose) -> None:
    started = time.monotonic()
    stack.run("build", timeout=1200)
    built_in = time.monotonic() - started
    image = json.loads(docker("image", "inspect", IMAGE, env=stack.env).stdout)[0]
    base = json.loads(docker("image", "inspect", "python:3.11-slim", env=stack.env).stdout)[0]
    extra_mb = (image["Size"] - base["Size"]) / 1e6
    print(
        f"\nobserved: image {IMAGE} {image['Size'] / 1e6:.0f} MB = base {base['Size'] / 1e6:.0f} MB"
        f" + {extra_mb:.0f} MB; build {built_in:.0f} s"
    )
    assert extra_mb < 100
    assert image["Config"]["User"] == f"{UID}:{UID}"
    assert "/health/ready" in " ".join(image["Config"]["Healthcheck"]["Test"])
    # One copy of the package, and its migrations found from any directory, on a read-only root.
    probe = docker(
        "run", "--rm", "--read-only", "--workdir", "/", "--entrypoint", "sh", IMAGE, "-c",
        "find / -xdev -name main.py -path '*/service/cli/*'; "
        "python -c 'from service.postgres.schema_gate import head_revision; "
        "print(head_revision())'",
        env=stack.env,
    ).stdout.split()  # fmt: skip
    assert probe == ["/opt/venv/lib/python3.11/site-packages/service/cli/main.py", head_revision()]


def test_a_failing_migrate_keeps_the_consumer_from_starting(stack: Compose) -> None:
    failing = HERE / "compose.failing-migrate.yml"
    result = stack.run("up", "--detach", "consumer", files=[failing], check=False, timeout=600)
    assert result.returncode != 0
    assert "migrate" in result.stderr and "didn't complete successfully" in result.stderr
    migrate = stack.state("migrate")["State"]
    consumer = stack.state("consumer")["State"]
    print(
        f"\nobserved: migrate exit {migrate['ExitCode']}; consumer {consumer['Status']}, "
        f"started at {consumer['StartedAt']}; up exit {result.returncode}"
    )
    assert migrate["ExitCode"] != 0
    assert consumer["Status"] == "created" and consumer["StartedAt"].startswith("0001-01-01")
    stack.run("down", "--timeout", "20", files=[failing])


def test_migrate_completes_before_the_consumer_starts_and_it_turns_healthy(stack: Compose) -> None:
    started = time.monotonic()
    stack.run("up", "--detach", timeout=900)
    healthy_after = stack.wait_healthy("consumer")
    migrate = stack.state("migrate")["State"]
    consumer = stack.state("consumer")
    finished, began = parse_time(migrate["FinishedAt"]), parse_time(consumer["State"]["StartedAt"])
    print(
        f"\nobserved: migrate exit {migrate['ExitCode']} finished {finished:%T.%f}, consumer "
        f"started {began:%T.%f}; healthy (HEALTHCHECK) {time.monotonic() - started:.0f} s after up"
        f" ({healthy_after:.0f} s of polling)"
    )
    assert migrate["ExitCode"] == 0
    assert finished <= began
    bindings = consumer["NetworkSettings"]["Ports"]["8080/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
    port = stack.env["CONSUMER_TEST_PORT"]
    assert bindings[0]["HostPort"] == port
    assert (http_status(port, "/health/live"), http_status(port, "/health/ready")) == (200, 200)


def test_the_service_runs_as_non_root_on_a_read_only_root(stack: Compose) -> None:
    consumer = stack.state("consumer")
    migrate = stack.state("migrate")
    assert consumer["HostConfig"]["ReadonlyRootfs"] and migrate["HostConfig"]["ReadonlyRootfs"]
    assert stack.exec("consumer", "id", "-u").stdout.strip() == UID
    denied = stack.exec("consumer", "sh", "-c", "touch /opt/venv/x /app/x", check=False)
    print(f"\nobserved: uid {UID}; writing: {denied.stderr.strip().splitlines()[0]}")
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr


def test_publish_sample_gives_the_readme_table(stack: Compose) -> None:
    out = stack.exec("consumer", "python", "-m", "service", "publish", "--sample").stdout
    assert out.startswith("published ")
    seen = wait_for_table(stack, readme_table())
    print("\nobserved:\n" + "\n".join(seen))


def test_compose_stop_is_graceful_within_the_grace_period(stack: Compose) -> None:
    started = time.monotonic()
    result = stack.run("stop", "consumer", timeout=GRACE_S + 30)
    took = time.monotonic() - started
    state = stack.state("consumer")["State"]
    code = state["ExitCode"]
    print(f"\nobserved: stop exit {result.returncode} in {took:.1f} s; exit code {code}")
    assert took < GRACE_S and state["ExitCode"] == 0 and not state["OOMKilled"]


def test_down_then_up_keeps_every_row_and_applies_new_events(stack: Compose) -> None:
    before = readme_table()
    stack.run("down", "--timeout", "30")
    kept = stack.volumes()
    assert [v.rsplit("_", 1)[-1] for v in kept] == ["kafka-data", "postgres-data"]
    stack.run("up", "--detach", timeout=600)
    stack.wait_healthy("consumer")
    assert table(stack) == before
    event = {
        "event_id": str(uuid.uuid4()),
        "event_type": "product.upserted",
        "occurred_at": datetime.now(UTC).isoformat(),
        "product_id": 4,
        "version": 1,
        "data": {"name": "Burr grinder", "price": "129.00", "quantity": 5},
    }
    stack.exec(
        "consumer", "python", "-m", "service", "publish", "--file", "-", stdin=json.dumps(event)
    )
    expected = before
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        seen = table(stack)
        if any(line.split()[:3] == ["4", "Burr", "grinder"] for line in seen):
            break
        time.sleep(2)
    print("\nobserved after down/up and one new event:\n" + "\n".join(seen))
    assert seen[:5] == expected[:5]  # header, rule, rows 1-3 unchanged
    assert seen[5].split() == ["4", "Burr", "grinder", "129.00", "5", "1"]
    assert seen[-1] == "(4 rows)"
