"""Inserting an import's rows: on SQLite, one ``executemany`` of plain tuples.

SQLAlchemy's Core executemany builds every row's parameters anew, through each column's type,
which cost a SQLite import more than the database's own work (about 30 µs a row of ``holds``
and of ``print_jobs``, against 10 for SQLite to insert it). Here the statement is compiled
once per table and columns, each value goes through its column's type as SQLAlchemy would send
it, and a value the same in every row (the import's time, its status) goes through once. On
PostgreSQL, SQLAlchemy's own batches of multi-row VALUES ("insertmanyvalues") are kept: one
round trip per thousand rows, where the driver's executemany would take more.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import Connection, Dialect, Table, insert

Processor = Callable[[Any], Any] | None


def insert_many(
    connection: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    same: Mapping[str, Any] | None = None,
) -> None:
    """Insert ``rows`` (each with the same columns) into ``table``, every row also taking the
    values ``same``. Every column with a default SQLAlchemy would fill in must be given."""
    if not rows:
        return
    same = same or {}
    varying = tuple(rows[0])
    _check_given(table, varying + tuple(same))
    if connection.dialect.name != "sqlite":
        connection.execute(insert(table), [{**row, **same} for row in rows])
        return
    sql, order, processors = _statement(connection.dialect, table, varying + tuple(same))
    fixed = {name: _processed(processors[name], value) for name, value in same.items()}
    # In the statement's order: a value of ``same`` as processed once, a row's own as it comes.
    slots = [(name, name in fixed, processors[name]) for name in order]
    parameters = [
        tuple(fixed[n] if once else _processed(p, row[n]) for n, once, p in slots) for row in rows
    ]
    connection.exec_driver_sql(sql, parameters)


@cache
def _check_given(table: Table, names: tuple[str, ...]) -> None:
    """Refuse to leave out a column SQLAlchemy would fill in: the executemany would not."""
    missing = [c.name for c in table.columns if c.name not in names and c.default is not None]
    if missing:
        raise ValueError(f"insert_many into {table.name} needs values for {', '.join(missing)}")


def _processed(processor: Processor, value: Any) -> Any:
    return value if processor is None or value is None else processor(value)


@cache
def _statement(
    dialect: Dialect, table: Table, names: tuple[str, ...]
) -> tuple[str, tuple[str, ...], dict[str, Processor]]:
    """The INSERT of these columns as SQLite's dialect writes it, the order of its (positional)
    parameters, and each column's bind processor (None where its type sends values as they
    are)."""
    compiled = insert(table).inline().compile(dialect=dialect, column_keys=list(names))
    assert compiled.positiontup is not None  # SQLite's qmark style
    processors = {
        name: table.columns[name].type.dialect_impl(dialect).bind_processor(dialect)
        for name in names
    }
    return str(compiled), tuple(compiled.positiontup), processors
