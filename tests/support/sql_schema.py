"""Check SQL text against the SQLAlchemy models (`service.postgres.models.Base.metadata`).

The write path keeps hand-written, set-based SQL (constant text, one round trip per
statement). Nothing at run time ties that text to the models the migrations are made from,
so `tests/unit/postgres/test_sql_schema.py` finds every statement the code can send and checks each
table and column it names here, with PostgreSQL's own parser (pglast, libpg_query):

- statements are found in the source, not listed by hand: every string literal or f-string
  (rendered with the module's constants) that starts like a SQL statement, and every
  module-level `text()` constant, so a rewritten or added statement is checked as it lands;
- a table must be one of the models' (or a catalog table, or `alembic_version`);
- `table.column` / `alias.column` must name a column of that table, alias, CTE or
  function alias (`unnest(...) AS t(topic, partition)`, `json_to_recordset(...) AS t(id bigint)`);
- an unqualified column must be a column of some relation the statement reads or writes,
  a CTE's or alias's column, or an output name of the statement;
- INSERT column lists, UPDATE SET targets, ON CONFLICT targets and `EXCLUDED.column` must be
  columns of the target table.

Scopes are flattened per statement (a column is accepted when any relation of the statement
has it): looser than PostgreSQL, but a renamed or dropped column, a misspelt table or a
column on the wrong table are all caught.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pglast
from pglast import ast as pg
from sqlalchemy import MetaData
from sqlalchemy.sql.elements import TextClause

# Tables outside the models whose columns are known.
EXTERNAL_TABLES: dict[str, frozenset[str]] = {"alembic_version": frozenset({"version_num"})}
# PostgreSQL's catalogs: any column is accepted.
CATALOG_PREFIXES = ("pg_", "information_schema")

# A string literal is taken for SQL when it starts with one of these, upper case.
_SQL_START = re.compile(r"\s*(WITH|SELECT|INSERT|UPDATE|DELETE|TRUNCATE)\s")
# SQLAlchemy's `:name` bind parameters (not PostgreSQL's `::type` casts).
_BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@dataclass(frozen=True)
class Statement:
    module: str  # "service.postgres.products"
    where: str  # "service/postgres/products.py:42" or "service.postgres.products._LOAD_PRODUCTS"
    sql: str


# Every PostgreSQL table has these system columns (the write path reads xmin to write
# compare-and-set); the models do not declare them.
SYSTEM_COLUMNS = frozenset({"tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"})


def schema_of(metadata: MetaData) -> dict[str, frozenset[str]]:
    return {
        name: frozenset(column.name for column in table.columns) | SYSTEM_COLUMNS
        for name, table in metadata.tables.items()
    }


# --- Finding the statements -------------------------------------------------------------


def statements_in_source(
    root: Path, package_dirs: list[str], skip: tuple[str, ...] = ()
) -> list[Statement]:
    """Every SQL literal in the modules under `package_dirs` (relative to `root`), plus every
    module-level `text()` constant of those modules (built at import time, e.g. by
    concatenation). Paths containing one of `skip` are left out."""
    found: dict[str, Statement] = {}
    for package in package_dirs:
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if any(part in relative for part in skip):
                continue
            module_name = relative.removesuffix(".py").replace("/", ".")
            module: Any = None
            tree = ast.parse(path.read_text("utf-8"))
            # The literal parts of an f-string are Constants too: only the whole is a statement.
            parts = {
                id(part)
                for node in ast.walk(tree)
                if isinstance(node, ast.JoinedStr)
                for part in node.values
            }
            for node in ast.walk(tree):
                sql: str | None = None
                if id(node) in parts:
                    continue
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    sql = node.value
                elif isinstance(node, ast.JoinedStr) and _looks_like_sql(_head(node)):
                    module = module or importlib.import_module(module_name)
                    sql = _render(node, module, f"{relative}:{node.lineno}")
                if sql is not None and _looks_like_sql(sql):
                    where = f"{relative}:{node.lineno}"
                    found.setdefault(sql, Statement(module_name, where, sql))
            if path.name == "__main__.py":  # importing it would run it
                continue
            module = module or importlib.import_module(module_name)
            for name, value in vars(module).items():
                if isinstance(value, TextClause) and _looks_like_sql(value.text):
                    where = f"{module_name}.{name}"
                    found.setdefault(value.text, Statement(module_name, where, value.text))
    return list(found.values())


def _looks_like_sql(text: str) -> bool:
    return _SQL_START.match(text) is not None


def _head(node: ast.JoinedStr) -> str:
    first = node.values[0] if node.values else None
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return ""


def _render(node: ast.JoinedStr, module: Any, where: str) -> str:
    """An f-string's text, with `{NAME}` taken from the module's constants."""
    parts = []
    for value in node.values:
        if isinstance(value, ast.Constant):
            parts.append(str(value.value))
        elif isinstance(value, ast.FormattedValue) and isinstance(value.value, ast.Name):
            if not hasattr(module, value.value.id):
                raise AssertionError(
                    f"{where}: SQL f-string uses {{{value.value.id}}}, which is not a module "
                    "constant: make it one, so the statement can be checked"
                )
            parts.append(str(getattr(module, value.value.id)))
        else:
            raise AssertionError(
                f"{where}: SQL f-string interpolates an expression ({ast.unparse(value)}): "
                "interpolate a module constant instead, so the statement can be checked"
            )
    return "".join(parts)


# --- Checking one statement ---------------------------------------------------------------


def problems(sql: str, tables: Mapping[str, frozenset[str]]) -> list[str]:
    """What in `sql` does not match `tables` (table name -> its columns); empty if nothing."""
    try:
        parsed = pglast.parse_sql(_BIND.sub("NULL", sql))
    except pglast.parser.ParseError as error:
        return [f"does not parse as PostgreSQL: {error}"]
    found: list[str] = []
    for raw in parsed:
        found.extend(_Checker(tables).check(raw.stmt))
    return found


class _Checker:
    def __init__(self, tables: Mapping[str, frozenset[str]]) -> None:
        self.tables = tables
        # name or alias -> its columns (None: any column)
        self.relations: dict[str, frozenset[str] | None] = {}
        self.ctes: dict[str, frozenset[str] | None] = {}
        self.output_names: set[str] = set()
        self.problems: list[str] = []

    def check(self, statement: pg.Node) -> list[str]:
        nodes = list(walk(statement))
        for node in nodes:  # CTEs first: a RangeVar may name one
            if isinstance(node, pg.CommonTableExpr):
                names = _names(node.aliascolnames) or _outputs(node.ctequery)
                self.ctes[node.ctename] = frozenset(names) if names is not None else None
                self.relations[node.ctename] = self.ctes[node.ctename]
        locked = {  # FOR UPDATE OF c: names a relation of the statement, not a table
            id(relation)
            for node in nodes
            if isinstance(node, pg.LockingClause)
            for relation in node.lockedRels or ()
        }
        for node in nodes:
            if id(node) not in locked:
                self._register(node)
        for node in nodes:
            if id(node) in locked and node.relname not in self.relations:
                self.problems.append(f"FOR UPDATE OF {node.relname}: no such relation here")
        for node in nodes:
            if isinstance(node, pg.InsertStmt):
                self._check_insert(node)
            elif isinstance(node, pg.UpdateStmt):
                self._check_targets(node.relation, node.targetList, "UPDATE ... SET")
            elif isinstance(node, pg.ColumnRef):
                self._check_column(node)
        return self.problems

    def _table_columns(self, name: str) -> frozenset[str] | None:
        if name in self.ctes:
            return self.ctes[name]
        if name in self.tables:
            return self.tables[name]
        if name in EXTERNAL_TABLES:
            return EXTERNAL_TABLES[name]
        if name.startswith(CATALOG_PREFIXES):
            return None
        self.problems.append(
            f"table {name!r} is not in the models ({', '.join(sorted(self.tables))})"
        )
        return None

    def _register(self, node: pg.Node) -> None:
        if isinstance(node, pg.RangeVar):
            columns = self._table_columns(node.relname)
            self.relations[node.alias.aliasname if node.alias else node.relname] = columns
        elif isinstance(node, pg.RangeFunction):
            function_names = [
                _names(call.funcname)[-1]
                for call, _ in (node.functions or ())
                if isinstance(call, pg.FuncCall)
            ]
            if node.alias is None:
                self.output_names.update(function_names)
            else:
                # `unnest(...) AS t(a, b)` names them; `json_to_recordset(...) AS t(a int, ...)`
                # defines them
                colnames = _names(node.alias.colnames) or [
                    column.colname for column in node.coldeflist or ()
                ]
                self.relations[node.alias.aliasname] = frozenset(colnames or [node.alias.aliasname])
        elif isinstance(node, pg.RangeSubselect) and node.alias is not None:
            names = _names(node.alias.colnames) or _outputs(node.subquery)
            self.relations[node.alias.aliasname] = frozenset(names) if names is not None else None
        elif isinstance(node, pg.SelectStmt):  # `expr AS name`, which ORDER BY may use
            self.output_names.update(
                target.name
                for target in node.targetList or ()
                if isinstance(target, pg.ResTarget) and target.name
            )

    def _check_insert(self, node: pg.InsertStmt) -> None:
        target = node.relation.relname
        self._check_targets(node.relation, node.cols, "INSERT column")
        columns = self._table_columns(target)
        self.relations["excluded"] = columns
        conflict = node.onConflictClause
        if conflict is None:
            return
        if conflict.infer is not None and columns is not None:
            for element in conflict.infer.indexElems or ():
                if isinstance(element, pg.IndexElem) and element.name not in columns:
                    self.problems.append(
                        f"ON CONFLICT names {element.name!r}, not a column of {target!r}"
                    )
        self._check_targets(node.relation, conflict.targetList, "ON CONFLICT ... SET")

    def _check_targets(self, relation: pg.RangeVar, targets: Any, what: str) -> None:
        columns = self._table_columns(relation.relname)
        if columns is None:
            return
        for target in targets or ():
            if isinstance(target, pg.ResTarget) and target.name not in columns:
                self.problems.append(
                    f"{what} {target.name!r} is not a column of {relation.relname!r}"
                )

    def _check_column(self, node: pg.ColumnRef) -> None:
        fields = node.fields
        if any(isinstance(field, pg.A_Star) for field in fields):
            return
        names = [field.sval for field in fields]
        if len(names) >= 2:
            qualifier, column = names[-2], names[-1]
            if qualifier not in self.relations:
                self.problems.append(
                    f"{qualifier}.{column}: {qualifier!r} is no table, alias or CTE here"
                )
                return
            columns = self.relations[qualifier]
            if columns is not None and column not in columns:
                self.problems.append(f"{qualifier}.{column}: no column {column!r} there")
            return
        column = names[0]
        if column in self.output_names:
            return
        known = list(self.relations.values())
        if any(columns is None for columns in known):
            return
        if not any(column in columns for columns in known if columns is not None):
            self.problems.append(f"column {column!r} belongs to none of {sorted(self.relations)}")


def walk(node: Any) -> Iterator[pg.Node]:
    if isinstance(node, pg.Node):
        yield node
        for slot in type(node).__slots__:
            yield from walk(getattr(node, slot, None))
    elif isinstance(node, list | tuple):
        for item in node:
            yield from walk(item)


def _names(nodes: Any) -> list[str]:
    return [node.sval for node in nodes or () if isinstance(node, pg.String)]


def _outputs(statement: Any) -> list[str] | None:
    """The column names a statement gives (its SELECT list, or its RETURNING list)."""
    if isinstance(statement, pg.SelectStmt):
        if statement.targetList:
            return _target_names(statement.targetList)
        if statement.larg is not None:  # UNION / EXCEPT / INTERSECT: the left side's names
            return _outputs(statement.larg)
        return None
    returning = getattr(statement, "returningClause", None)
    targets = getattr(returning, "exprs", None) or getattr(statement, "returningList", None)
    return _target_names(targets) if targets else None


def _target_names(targets: Any) -> list[str]:
    names = []
    for target in targets:
        if not isinstance(target, pg.ResTarget):
            continue
        if target.name:
            names.append(target.name)
        elif isinstance(target.val, pg.ColumnRef) and isinstance(target.val.fields[-1], pg.String):
            names.append(target.val.fields[-1].sval)
        elif isinstance(target.val, pg.FuncCall):
            names.append(_names(target.val.funcname)[-1])
    return names
