"""Every SQL statement in service/ and bench/ names only tables and columns of the models.

The statements are found in the source (tests/support/sql_schema.py), so a statement that is
rewritten or added is checked without editing this file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table

from service.postgres.models import Base
from tests.support.sql_schema import Statement, problems, schema_of, statements_in_source

ROOT = Path(__file__).resolve().parents[3]
TABLES = schema_of(Base.metadata)


@pytest.fixture(scope="module")
def statements() -> list[Statement]:
    # bench/peers writes the peers' own table (bench/peers/schema.sql), not ours.
    return statements_in_source(ROOT, ["service", "bench"], skip=("migrations", "bench/peers"))


def test_every_statement_names_only_tables_and_columns_of_the_models(
    statements: list[Statement],
) -> None:
    found = {
        statement.where: issues
        for statement in statements
        if (issues := problems(statement.sql, TABLES))
    }
    assert not found, "\n".join(
        f"{where}: {'; '.join(issues)}" for where, issues in sorted(found.items())
    )


def test_the_search_finds_the_statements_of_every_module_that_sends_sql(
    statements: list[Statement],
) -> None:
    modules = {statement.module for statement in statements}
    expected = {
        "postgres.products",
        "postgres.processed_events",
        "postgres.consumer_offsets",
        "postgres.schema_marker",
        "postgres.grants",
    }
    assert {f"service.{name}" for name in expected} <= modules


def test_every_table_of_the_models_is_used_by_some_statement(
    statements: list[Statement],
) -> None:
    named = {table for statement in statements for table in TABLES if table in statement.sql}
    assert named == set(TABLES)


def test_a_column_dropped_from_the_models_fails_the_statements_that_use_it(
    statements: list[Statement],
) -> None:
    without = dict(TABLES, products=TABLES["products"] - {"description"})
    failing = [s.where for s in statements if problems(s.sql, without)]
    in_products = ("service/postgres/products.py", "service.postgres.products.")
    assert any(where.startswith(in_products) for where in failing), (
        failing
    )  # the write path's load and save both name products.description


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT id, nmae FROM products", "column 'nmae'"),
        ("SELECT p.id FROM product AS p", "table 'product' is not in the models"),
        ("SELECT c.price FROM consumer_offsets AS c", "c.price: no column 'price'"),
        ("SELECT x.id FROM products AS p", "'x' is no table, alias or CTE here"),
        ("INSERT INTO products (id, sku) VALUES (:id, :sku)", "INSERT column 'sku'"),
        ("UPDATE products SET stock = 1 WHERE id = :id", "UPDATE ... SET 'stock'"),
        (
            "INSERT INTO products (id) VALUES (1) ON CONFLICT (sku) DO NOTHING",
            "ON CONFLICT names 'sku'",
        ),
        (
            "INSERT INTO products (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET qty = 1",
            "ON CONFLICT ... SET 'qty'",
        ),
        (
            "INSERT INTO products (id) VALUES (1) ON CONFLICT (id) "
            "DO UPDATE SET name = EXCLUDED.nam",
            "excluded.nam: no column 'nam'",
        ),
        (
            "SELECT t.topic FROM unnest(CAST(:a AS text[])) AS t(name) JOIN consumer_offsets AS c "
            "ON c.topic = t.name",
            "t.topic: no column 'topic'",
        ),
        ("SELECT id FROM products WHERE", "does not parse as PostgreSQL"),
    ],
)
def test_a_statement_that_drifted_from_the_models_is_named(sql: str, expected: str) -> None:
    found = problems(sql, TABLES)
    assert any(expected in problem for problem in found), found


@pytest.mark.parametrize(
    "sql",
    [
        # a CTE's columns, EXCEPT ALL, data-modifying CTE with RETURNING
        """WITH batch AS (SELECT DISTINCT unnest(CAST(:ids AS uuid[])) AS event_id),
        claimed AS (INSERT INTO processed_events (event_id) SELECT event_id FROM batch
                    ON CONFLICT DO NOTHING RETURNING event_id)
        SELECT event_id FROM batch EXCEPT ALL SELECT event_id FROM claimed""",
        # a function alias's columns, a row lock, ORDER BY
        """SELECT c.topic, c.partition, c.next_offset FROM consumer_offsets AS c
        JOIN unnest(CAST(:topics AS varchar[]), CAST(:partitions AS integer[]))
          AS t(topic, partition)
          ON c.topic = t.topic AND c.partition = t.partition
        WHERE c.group_id = :group_id ORDER BY c.topic, c.partition FOR UPDATE OF c""",
        # a select alias used by ORDER BY, a subselect in WHERE, a cast with ::
        "SELECT id AS pid FROM products WHERE id IN (SELECT id FROM products) ORDER BY pid",
        "SELECT version_num::text FROM alembic_version",
        "SELECT tablename FROM pg_tables WHERE schemaname = :s",
    ],
)
def test_statements_that_match_the_models_pass(sql: str) -> None:
    assert problems(sql, TABLES) == []


def test_the_check_follows_the_metadata_it_is_given() -> None:
    metadata = MetaData()
    Table("widgets", metadata, Column("id", Integer, primary_key=True), Column("size", Integer))
    tables = schema_of(metadata)
    assert problems("SELECT id, size FROM widgets", tables) == []
    assert problems("SELECT id, name FROM widgets", tables) != []
