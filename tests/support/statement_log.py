"""What a role's statements need, from PostgreSQL's own statement log.

A role with `log_statement = 'all'` (ALTER ROLE ... SET) has every statement it sends written
to the server's log, as the server received it: the consumer's, the CLI's, SQLAlchemy's and
asyncpg's own. `statements()` reads them back from a log written with `LOG_LINE_PREFIX`, and
`needed_privileges()` says, with PostgreSQL's parser (pglast), which privileges each needs:

- a table read (FROM, JOIN, a subquery, a CTE's body): SELECT;
- INSERT's target: INSERT, plus SELECT with RETURNING, plus UPDATE and SELECT with
  ON CONFLICT DO UPDATE;
- UPDATE's and DELETE's target: UPDATE or DELETE, plus SELECT when the statement reads it
  (WHERE, FROM/USING, RETURNING);
- SELECT ... FOR UPDATE/NO KEY UPDATE/SHARE/KEY SHARE: UPDATE on the locked tables;
- TRUNCATE: TRUNCATE; CREATE TEMPORARY TABLE: TEMPORARY on the database;
- any table: USAGE on its schema.

Catalogs (pg_*, information_schema) and functions are PUBLIC's by default and left out.
Transaction control, SET and SHOW need nothing. Any other statement (DDL) needs what no grant
gives: it is reported as ("statement", its kind), so a comparison with the grants fails on it.
A column default that calls nextval() needs USAGE on its sequence, which the statement's text
does not show: the schema has no such default (no sequence at all).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pglast
from pglast import ast as pg
from pglast.enums import LockClauseStrength, OnConflictAction

from tests.support.sql_schema import walk

Grant = tuple[str, str]

# Every log record starts with this (log_line_prefix): the role, then the process id.
LOG_LINE_PREFIX = "@@%u@@%p@@ "
_RECORD = re.compile(r"^@@(?P<user>[^@]*)@@(?P<pid>\d+)@@ (?P<level>[A-Z]+):  (?P<text>.*)$")
# `statement: SQL` (simple protocol) or `execute <name>: SQL` (extended, as asyncpg sends).
_STATEMENT = re.compile(r"^(?:statement|execute [^:]+): (?P<sql>.*)$", re.DOTALL)

_NEED_NOTHING = (pg.TransactionStmt, pg.VariableSetStmt, pg.VariableShowStmt, pg.DiscardStmt)
_CATALOGS = ("pg_catalog", "information_schema")


def statements(log: Path, role: str) -> list[str]:
    """Every statement `role` sent, in order, from a log written with LOG_LINE_PREFIX (a
    record's further lines start with a tab)."""
    found: list[str] = []
    for user, level, text in _records(log.read_text(errors="replace").splitlines()):
        if user == role and level == "LOG" and (match := _STATEMENT.match(text)):
            found.append(match.group("sql"))
    return found


def _records(lines: Iterable[str]) -> Iterator[tuple[str, str, str]]:
    current: tuple[str, str, list[str]] | None = None
    for line in lines:
        if match := _RECORD.match(line):
            if current is not None:
                yield current[0], current[1], "\n".join(current[2])
            current = (match.group("user"), match.group("level"), [match.group("text")])
        elif current is not None and line.startswith("\t"):
            current[2].append(line[1:])
    if current is not None:
        yield current[0], current[1], "\n".join(current[2])


def needed_privileges(sql: str) -> set[Grant]:
    """The (object, privilege) pairs PostgreSQL checks to run `sql`."""
    needed: set[Grant] = set()
    for raw in pglast.parse_sql(sql):
        needed |= _statement_needs(raw.stmt)
    return needed


def _statement_needs(statement: Any) -> set[Grant]:
    if isinstance(statement, _NEED_NOTHING):
        return set()
    if not isinstance(
        statement, pg.SelectStmt | pg.InsertStmt | pg.UpdateStmt | pg.DeleteStmt | pg.TruncateStmt
    ) and not _creates_temporary_table(statement):
        return {("statement", type(statement).__name__)}
    nodes = list(walk(statement))
    ctes = {node.ctename for node in nodes if isinstance(node, pg.CommonTableExpr)}
    # The privileges a RangeVar needs other than a read's SELECT, by the node's identity.
    roles: dict[int, set[str]] = {}
    needed: set[Grant] = set()
    for node in nodes:
        if isinstance(node, pg.InsertStmt):
            wants = {"INSERT"}
            if _returns(node):
                wants.add("SELECT")
            conflict = node.onConflictClause
            if conflict is not None and conflict.action == OnConflictAction.ONCONFLICT_UPDATE:
                wants |= {"UPDATE", "SELECT"}
            roles[id(node.relation)] = wants
        elif isinstance(node, pg.UpdateStmt | pg.DeleteStmt):
            verb = "UPDATE" if isinstance(node, pg.UpdateStmt) else "DELETE"
            other = node.fromClause if isinstance(node, pg.UpdateStmt) else node.usingClause
            reads = node.whereClause is not None or _returns(node) or bool(other)
            roles[id(node.relation)] = {verb, "SELECT"} if reads else {verb}
        elif isinstance(node, pg.TruncateStmt):
            for relation in node.relations:
                roles[id(relation)] = {"TRUNCATE"}
        elif isinstance(node, pg.CreateStmt):
            needed.add(("database", "TEMPORARY"))
            roles[id(node.relation)] = set()  # the new table is the session's own
    # FOR UPDATE OF c: `c` names a table of the FROM list, it is no table itself.
    locks = [n for n in nodes if isinstance(n, pg.LockingClause)]
    lock_names = {id(r) for lock in locks for r in lock.lockedRels or ()}
    aliases: dict[str, str] = {}
    for node in nodes:
        if not isinstance(node, pg.RangeVar) or _is_catalog(node) or id(node) in lock_names:
            continue
        if node.schemaname is None and node.relname in ctes:
            continue
        name = _qualified(node)
        aliases[node.alias.aliasname if node.alias else node.relname] = name
        needed |= {(name, privilege) for privilege in roles.get(id(node), {"SELECT"})}
    for lock in locks:
        if lock.strength != LockClauseStrength.LCS_NONE:
            locked = [aliases.get(r.relname, _qualified(r)) for r in lock.lockedRels or ()]
            needed |= {(name, "UPDATE") for name in locked or aliases.values()}
    if any(obj not in ("database", "statement") for obj, _ in needed):
        needed.add(("schema public", "USAGE"))
    return needed


def _returns(node: pg.InsertStmt | pg.UpdateStmt | pg.DeleteStmt) -> bool:
    """A RETURNING list (pglast 8, PostgreSQL 17's parser: `returningClause`)."""
    return bool(getattr(node, "returningClause", None) or getattr(node, "returningList", None))


def _creates_temporary_table(statement: Any) -> bool:
    return isinstance(statement, pg.CreateStmt) and statement.relation.relpersistence == "t"


def _is_catalog(node: pg.RangeVar) -> bool:
    if node.schemaname is not None:
        return node.schemaname in _CATALOGS
    return node.relname.startswith("pg_")


def _qualified(node: pg.RangeVar) -> str:
    """Tables of the public schema by name, others schema-qualified (so no grant matches)."""
    if node.schemaname in (None, "public"):
        return str(node.relname)
    return f"{node.schemaname}.{node.relname}"
