"""Expand/contract decisions, the consumer's grants and the migration role's URL: pure logic."""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory

from service.config.settings import ConfigurationError, Settings, load_settings
from service.core.schema_compat import (
    IncompatibleDeclaration,
    Marker,
    judge,
    oldest_compatible_code,
)
from service.postgres.grants import (
    InvalidDeclaration,
    declared_privileges,
    exact_privileges,
    grant_statements,
    undeclared_privileges,
)
from service.postgres.models import Base
from service.postgres.schema_gate import alembic_config, head_revision

CODE = ["a1", "b2", "c3"]  # this release: head c3


def test_at_head_runs() -> None:
    assert judge(CODE, ["c3"], Marker("c3", "b2")).ok


@pytest.mark.parametrize("marker", [None, Marker("c3", "c3")])
def test_behind_head_is_refused_naming_migrate(marker: Marker | None) -> None:
    verdict = judge(CODE, ["b2"], marker)
    assert not verdict.ok
    assert verdict.message == (
        "database schema is at revision b2, behind this release's head c3; "
        "run `python -m service migrate` (alembic upgrade head) first"
    )


def test_no_schema_is_refused_naming_migrate() -> None:
    verdict = judge(CODE, [], None)
    assert (verdict.ok, verdict.message) == (
        False,
        "the database has no schema yet; run `python -m service migrate` first",
    )


@pytest.mark.parametrize("oldest", ["c3", "b2", "a1"])
def test_a_newer_schema_runs_when_it_accepts_this_head_or_older(oldest: str) -> None:
    verdict = judge(CODE, ["d4"], Marker("d4", oldest))
    assert verdict.ok
    assert "newer than this release's head c3" in verdict.message


def test_a_newer_schema_that_needs_newer_code_is_refused_naming_both_fixes() -> None:
    verdict = judge(CODE, ["e5"], Marker("e5", "d4"))
    assert not verdict.ok
    assert verdict.message == (
        "database schema is at revision e5, newer than this release (head c3), and needs code "
        "from revision d4 on; deploy the release that has revision e5, or downgrade the "
        "database with that release (`python -m service migrate --downgrade c3`)"
    )


@pytest.mark.parametrize("marker", [None, Marker("d4", "a1")])
def test_a_newer_schema_without_its_own_marker_is_refused(marker: Marker | None) -> None:
    # No marker, or one left from another revision (e.g. SQL applied with --sql by hand).
    verdict = judge(CODE, ["e5"], marker)
    assert not verdict.ok
    assert "records no compatibility for it" in verdict.message
    assert "migrate --downgrade c3" in verdict.message


def test_several_heads_are_refused() -> None:
    verdict = judge(CODE, ["c3", "x9"], None)
    assert not verdict.ok and "several revisions" in verdict.message


def test_undeclared_revisions_accept_only_themselves() -> None:
    assert oldest_compatible_code([("a1", None), ("b2", None)]) == "b2"


def test_expand_revisions_keep_the_previous_release() -> None:
    lineage = [("a1", None), ("b2", None), ("c3", "b2"), ("d4", "b2")]
    assert oldest_compatible_code(lineage) == "b2"


def test_a_later_revision_cannot_widen_an_earlier_contract() -> None:
    # c3 is a contract; d4 claims the code before it would still work: it cannot.
    lineage = [("a1", None), ("b2", None), ("c3", None), ("d4", "b2")]
    assert oldest_compatible_code(lineage) == "c3"


@pytest.mark.parametrize("declared", ["zz", "d4"])
def test_compatible_with_must_be_itself_or_an_ancestor(declared: str) -> None:
    with pytest.raises(IncompatibleDeclaration, match=f"compatible_with={declared!r}"):
        oldest_compatible_code([("a1", None), ("b2", declared), ("d4", None)])


def test_grants_are_exactly_the_declared_privileges() -> None:
    owned = {"products": "TABLE", "alembic_version": "TABLE", "products_id_seq": "SEQUENCE"}
    declared = {"products": ("SELECT", "INSERT"), "alembic_version": ("SELECT",)}
    statements = grant_statements('app"role', "public", "inv", owned, declared)
    assert statements == [
        'GRANT USAGE ON SCHEMA "public" TO "app""role"',
        'REVOKE ALL ON TABLE "public"."alembic_version" FROM "app""role"',
        'GRANT SELECT ON TABLE "public"."alembic_version" TO "app""role"',
        'REVOKE ALL ON TABLE "public"."products" FROM "app""role"',
        'GRANT SELECT, INSERT ON TABLE "public"."products" TO "app""role"',
        'REVOKE ALL ON SEQUENCE "public"."products_id_seq" FROM "app""role"',
        'REVOKE TEMPORARY ON DATABASE "inv" FROM "app""role"',
    ]


def test_every_owned_object_has_its_exact_privileges_none_for_the_undeclared() -> None:
    """What migrate compares the role's grants with, and what it grants: one list."""
    owned = {"products": "TABLE", "products_id_seq": "SEQUENCE"}
    assert exact_privileges(owned, {"products": ("select", "insert"), "gone": ("SELECT",)}) == {
        "products": ("SELECT", "INSERT"),
        "products_id_seq": (),
    }


@pytest.mark.parametrize("privilege", ["TRUNCATE", "REFERENCES", "TRIGGER", "ALL"])
def test_a_declaration_cannot_grant_more_than_rows(privilege: str) -> None:
    with pytest.raises(InvalidDeclaration, match=f"grants {privilege} on table products"):
        grant_statements("app", "public", "inv", {"products": "TABLE"}, {"products": (privilege,)})


def test_the_newest_declaration_at_or_below_the_database_revision_applies() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    head = declared_privileges(script, [str(head_revision())])
    assert head is not None
    # Every table of the models (and Alembic's own) is declared: a new one must say its grants.
    assert set(head) == set(Base.metadata.tables) | {"alembic_version"}
    assert declared_privileges(script, ["3c5f0a9d2b71"]) is None  # the releases before
    assert declared_privileges(script, []) is None


def test_the_releases_before_declarations_keep_their_grants() -> None:
    granted = undeclared_privileges(["products", "alembic_version"], ["products_id_seq"])
    assert granted == {
        "products": ("SELECT", "INSERT", "UPDATE", "DELETE"),
        "alembic_version": ("SELECT",),
        "products_id_seq": ("USAGE", "SELECT"),
    }


BASE = dict(
    postgres_user="app",
    postgres_password="app-secret",
    postgres_db="inventory",
    kafka_bootstrap_servers="127.0.0.1:9092",
)


def test_migrations_use_the_consumer_role_unless_told_otherwise() -> None:
    settings = Settings(**BASE, postgres_migration_user="", postgres_migration_password="")  # type: ignore[arg-type]
    assert settings.migration_user == "app"
    assert settings.migration_database_url == settings.database_url


def test_the_migration_role_gets_its_own_escaped_url() -> None:
    settings = Settings(
        **BASE,  # type: ignore[arg-type]
        postgres_migration_user="owner",
        postgres_migration_password="p@ss:w/rd#1",
    )
    assert settings.migration_database_url == (
        "postgresql+asyncpg://owner:p%40ss%3Aw%2Frd%231@127.0.0.1:5432/inventory"
    )


def test_a_migration_role_without_a_password_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    for name, value in BASE.items():
        monkeypatch.setenv(name.upper(), value)
    monkeypatch.setenv("POSTGRES_MIGRATION_USER", "owner")
    monkeypatch.delenv("POSTGRES_MIGRATION_PASSWORD", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    assert str(error.value) == (
        "configuration error: POSTGRES_MIGRATION_PASSWORD=None is invalid: Value error, it "
        "must be set when POSTGRES_MIGRATION_USER='owner' is; fix it in the environment or in "
        ".env"
    )
