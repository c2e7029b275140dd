"""Every command the docs show works as shown (docs/README.md, "Commands in these pages").

Each ```sh block of README.md, MIGRATIONS.md and docs/**/*.md runs with `bash -e` from the
repository root, with the local stack's environment and the running venv first on PATH, in
page order, and must exit 0, or N after a line `<!-- expect-exit: N -->`. Each page runs on a
database, topics and a consumer group of its own (a copy of a database migrated once per
session; topics and group named for the page), and on an HTTP port of its own, so it neither
sees nor disturbs other tests. A block after `<!-- run-by: PATH -->` is run elsewhere: PATH
must contain each of its command lines verbatim. A block after `<!-- not-run: REASON -->` is
run by nothing, and must say why.

Without PostgreSQL and Kafka the page tests fail (the `pg_server` and `kafka` fixtures), never
skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from tests.support.cli import service_env
from tests.support.services import PostgresEndpoint

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^<!-- (expect-exit|run-by|not-run): (.*?) -->$")
# Fences whose commands the test would not see: commands go in ```sh blocks.
HIDDEN_SHELL = re.compile(r"^\s*```(bash|shell|console|zsh|sh-session|shell-session)\s*$")
BLOCK_TIMEOUT_S = 120
TEST_DATABASE = os.environ.get("TEST_POSTGRES_DB", "inventory_test")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    text: str
    marker: str  # "", "expect-exit", "run-by" or "not-run"
    argument: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def expected_exit(self) -> int:
        return int(self.argument) if self.marker == "expect-exit" else 0

    def command_lines(self) -> list[str]:
        """The block's commands, without comments, blank lines and line continuations."""
        joined = re.sub(r"\\\n\s*", "", self.text)
        lines = (re.sub(r"(^|\s+)#\s.*$", "", line).strip() for line in joined.splitlines())
        return [line for line in lines if line]


def pages() -> list[Path]:
    return [ROOT / "README.md", ROOT / "MIGRATIONS.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(page: Path) -> list[Block]:
    """The ```sh blocks of a page (in a list item too), each with the marker on the line right
    before it."""
    found, lines = [], page.read_text("utf-8").splitlines()
    fence: int | None = None
    for number, line in enumerate(lines):
        if not line.lstrip().startswith("```"):
            continue
        if fence is None:
            fence = number
            continue
        if lines[fence].strip() == "```sh":
            before = MARKER.match(lines[fence - 1].strip()) if fence else None
            found.append(
                Block(
                    page,
                    fence + 1,
                    textwrap.dedent("\n".join(lines[fence + 1 : number]) + "\n"),
                    before.group(1) if before else "",
                    before.group(2).strip() if before else "",
                )
            )
        fence = None
    return found


ALL_BLOCKS = [block for page in pages() for block in blocks(page)]
RUN_PAGES = sorted(
    {block.page for block in ALL_BLOCKS if block.marker in ("", "expect-exit")},
    key=pages().index,
)


def test_the_docs_have_command_blocks_of_each_kind() -> None:
    kinds = {block.marker for block in ALL_BLOCKS}
    assert {"", "expect-exit", "run-by", "not-run"} <= kinds, kinds
    assert ROOT / "README.md" in RUN_PAGES


def test_every_marker_stands_right_before_a_sh_block() -> None:
    misplaced = []
    for page in pages():
        lines = page.read_text("utf-8").splitlines()
        for number, line in enumerate(lines):
            if not re.match(r"<!-- (expect-exit|run-by|not-run)\b", line.strip()):
                continue
            follows = lines[number + 1].strip() if number + 1 < len(lines) else ""
            if not MARKER.match(line.strip()) or follows != "```sh":
                misplaced.append(f"{page.relative_to(ROOT)}:{number + 1}: {line.strip()}")
    assert not misplaced, "a marker is `<!-- KIND: VALUE -->` right before a ```sh fence:\n" + (
        "\n".join(misplaced)
    )


def test_commands_are_in_sh_blocks_only() -> None:
    hidden = [
        f"{page.relative_to(ROOT)}:{number + 1}: {line.strip()}"
        for page in pages()
        for number, line in enumerate(page.read_text("utf-8").splitlines())
        if HIDDEN_SHELL.match(line)
    ]
    assert not hidden, "write commands in ```sh blocks (output in ```text):\n" + "\n".join(hidden)


def test_expected_exit_codes_are_numbers() -> None:
    bad = [b.where for b in ALL_BLOCKS if b.marker == "expect-exit" and not b.argument.isdigit()]
    assert not bad, f"<!-- expect-exit: N --> takes a number: {bad}"


def test_blocks_not_run_say_why() -> None:
    silent = [b.where for b in ALL_BLOCKS if b.marker == "not-run" and len(b.argument) < 10]
    assert not silent, f"<!-- not-run: REASON --> needs a reason: {silent}"


@pytest.mark.parametrize(
    "block", [b for b in ALL_BLOCKS if b.marker == "run-by"], ids=lambda b: b.where
)
def test_a_block_run_elsewhere_is_run_there_verbatim(block: Block) -> None:
    runner = ROOT / block.argument
    assert runner.is_file(), f"{block.where}: run-by names {block.argument}, which does not exist"
    # A command continued over lines (`\` then a newline) is one line, there as in the block.
    text = re.sub(r"\\\n\s*", "", runner.read_text("utf-8"))
    missing = [line for line in block.command_lines() if line not in text]
    assert not missing, f"{block.where}: {block.argument} does not run {missing}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def owner_of(server: PostgresEndpoint) -> PostgresEndpoint:
    """The role that migrates (the local stack's owner role), else the consumer's own."""
    user = os.environ.get("POSTGRES_MIGRATION_USER") or server.user
    password = os.environ.get("POSTGRES_MIGRATION_PASSWORD") or server.password
    return PostgresEndpoint(server.host, server.port, user, password, server.database)


async def _sql(endpoint: PostgresEndpoint, *statements: str) -> None:
    try:
        connection = await endpoint.connect()
    except (OSError, asyncpg.PostgresError) as error:
        pytest.fail(
            f"PostgreSQL at {endpoint.host}:{endpoint.port} is not reachable as "
            f"{endpoint.user!r} ({error}); start it with `scripts/local-stack up`",
            pytrace=False,
        )
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


def _at(endpoint: PostgresEndpoint, database: str) -> PostgresEndpoint:
    return PostgresEndpoint(
        endpoint.host, endpoint.port, endpoint.user, endpoint.password, database
    )


@pytest.fixture(scope="module")
def docs_template(pg_server: PostgresEndpoint, kafka: str) -> Iterator[str]:
    """A database migrated to head by `python -m service migrate` as the owner, as an operator
    would; each page runs on a copy of it."""
    owner, name = owner_of(pg_server), f"{TEST_DATABASE}_docs"
    asyncio.run(
        _sql(owner, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    )
    env = service_env(_at(pg_server, name), _at(owner, name), KAFKA_BOOTSTRAP_SERVERS=kafka)
    migrated = subprocess.run(
        [sys.executable, "-m", "service", "migrate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stderr
    yield name
    asyncio.run(_sql(owner, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def page_env(
    app: PostgresEndpoint, owner: PostgresEndpoint, kafka: str, page: Path
) -> dict[str, str]:
    slug = re.sub(r"[^a-z0-9]+", "-", str(page.relative_to(ROOT)).lower().removesuffix(".md"))
    suffix = uuid.uuid4().hex[:8]
    env = service_env(
        app,
        owner,
        KAFKA_BOOTSTRAP_SERVERS=kafka,
        KAFKA_TOPIC=f"docs.{slug}.{suffix}",
        KAFKA_DLQ_TOPIC=f"docs.{slug}.{suffix}.dlq",
        KAFKA_GROUP_ID=f"docs-{slug}-{suffix}",
        HTTP_PORT=str(free_port()),
    )
    # As if the reader had run `. .venv/bin/activate`: the venv running these tests.
    venv = Path(sys.executable).parent
    env["PATH"] = f"{venv}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv.parent)
    return env


def run_block(block: Block, env: dict[str, str]) -> tuple[int | None, str, float]:
    """Run the block in its own process group; kill whatever it leaves behind. Returns the
    exit code (None: timed out), the output and the seconds it took."""
    with tempfile.TemporaryFile("w+") as output:
        started = time.monotonic()
        process = subprocess.Popen(
            ["bash", "-e", "-c", block.text],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            code: int | None = process.wait(timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - started
        with contextlib.suppress(ProcessLookupError):  # the block left nothing running
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        output.seek(0)
        return code, output.read(), took


def repository_state() -> str:
    """What `git status` shows, and whether `.env` (ignored, but read by every command) exists:
    a page's commands must leave both as they are."""
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert status.returncode == 0, f"git status failed: {status.stderr}"
    return f"{status.stdout}.env exists: {(ROOT / '.env').exists()}\n"


@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_the_commands_of_the_page_work_as_shown(
    page: Path, pg_server: PostgresEndpoint, kafka: str, docs_template: str
) -> None:
    owner = owner_of(pg_server)
    database = f"{docs_template}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_sql(owner, f'CREATE DATABASE "{database}" TEMPLATE "{docs_template}"'))
    before = repository_state()
    try:
        env = page_env(_at(pg_server, database), _at(owner, database), kafka, page)
        for block in blocks(page):
            if block.marker not in ("", "expect-exit"):
                continue
            code, output, took = run_block(block, env)
            shown = f"{block.where} ({took:.1f} s):\n{block.text}--- output:\n{output[-4000:]}"
            assert code is not None, f"ran over {BLOCK_TIMEOUT_S} s: {shown}"
            assert code == block.expected_exit, f"exit {code}, not {block.expected_exit}: {shown}"
        after = repository_state()
        assert after == before, f"the commands of {page.name} changed the repository:\n{after}"
    finally:
        asyncio.run(_sql(owner, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
