"""Reading a role's statements from the server log, and the privileges each needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.statement_log import needed_privileges, statements

LOG = (
    "@@sink@@41@@ LOG:  execute __asyncpg_stmt_1__: SELECT id\n"
    "\tFROM products\n"
    "@@sink@@41@@ DETAIL:  parameters: $1 = '1'\n"
    "@@owner@@42@@ LOG:  statement: DELETE FROM products\n"
    "@@sink@@41@@ LOG:  statement: BEGIN\n"
    "@@sink@@41@@ ERROR:  permission denied for table products\n"
    "@@sink@@41@@ STATEMENT:  TRUNCATE products\n"
)


def test_the_role_s_statements_are_read_whole_and_in_order(tmp_path: Path) -> None:
    log = tmp_path / "postgres.log"
    log.write_text(LOG)
    assert statements(log, "sink") == ["SELECT id\nFROM products", "BEGIN"]


@pytest.mark.parametrize(
    ("sql", "needed"),
    [
        ("SELECT 1", set()),
        ("SELECT version_num FROM alembic_version", {("alembic_version", "SELECT")}),
        ("INSERT INTO t (a) VALUES (1) ON CONFLICT DO NOTHING", {("t", "INSERT")}),
        ("INSERT INTO t (a) VALUES (1) RETURNING a", {("t", "INSERT"), ("t", "SELECT")}),
        (
            "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = EXCLUDED.a",
            {("t", "INSERT"), ("t", "UPDATE"), ("t", "SELECT")},
        ),
        ("UPDATE t SET a = 1", {("t", "UPDATE")}),
        ("UPDATE t SET a = 1 WHERE a = 2", {("t", "UPDATE"), ("t", "SELECT")}),
        ("DELETE FROM t WHERE a IN (SELECT b FROM u)", {("t", "DELETE"), ("t", "SELECT"),
                                                       ("u", "SELECT")}),
        ("SELECT c.a FROM t AS c JOIN u ON true FOR UPDATE OF c",
         {("t", "SELECT"), ("t", "UPDATE"), ("u", "SELECT")}),
        ("WITH x AS (INSERT INTO t (a) VALUES (1) RETURNING a) SELECT a FROM x",
         {("t", "INSERT"), ("t", "SELECT")}),
        ("TRUNCATE t", {("t", "TRUNCATE")}),
        ("SELECT relname FROM pg_class", set()),
        ("SELECT 1 FROM other.t", {("other.t", "SELECT")}),
    ],
)  # fmt: skip
def test_each_statement_needs_its_privileges_and_usage_on_the_schema(
    sql: str, needed: set[tuple[str, str]]
) -> None:
    schema = {("schema public", "USAGE")} if needed else set()
    assert needed_privileges(sql) == needed | schema


def test_temporary_tables_need_the_database_s_privilege_and_ddl_needs_what_no_grant_gives() -> None:
    assert needed_privileges("CREATE TEMPORARY TABLE x (a int)") == {("database", "TEMPORARY")}
    assert needed_privileges("DROP TABLE products") == {("statement", "DropStmt")}
    assert needed_privileges("BEGIN; SET jit = off; SHOW jit; COMMIT") == set()
