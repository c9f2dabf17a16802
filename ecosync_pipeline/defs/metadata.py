"""Tables for Dagster metadata: a typed table for the UI and a Markdown rendering of it.

pandas' ``to_markdown`` needs tabulate, which ecosync does not depend on; the few lines
below render the same table without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal

from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

Cell = str | int | float | bool | None


def cell(value: object) -> Cell:
    """A value a table cell can hold: numbers and text as they are, anything else as text."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _column_type(values: Sequence[Cell]) -> str:
    kinds = {type(v) for v in values if v is not None}
    if kinds and kinds <= {int}:
        return "int"
    if kinds and kinds <= {int, float}:
        return "float"
    if kinds == {bool}:
        return "bool"
    return "string"


def table(columns: Sequence[str], rows: Sequence[Mapping[str, object]]) -> MetadataValue:
    """A MetadataValue.table of ``rows`` restricted to ``columns``, column types inferred."""
    cells = [{c: cell(row.get(c)) for c in columns} for row in rows]
    schema = TableSchema(
        columns=[TableColumn(name=c, type=_column_type([r[c] for r in cells])) for c in columns]
    )
    return MetadataValue.table(records=[TableRecord(data=r) for r in cells], schema=schema)


def _md_escape(value: Cell) -> str:
    if value is None:
        return ""
    text = str(value)
    # A pipe would end the cell and a newline the row.
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_table(columns: Sequence[str], rows: Sequence[Mapping[str, object]]) -> str:
    """A GitHub-flavoured Markdown table of ``rows`` restricted to ``columns``."""
    lines = [
        "| " + " | ".join(columns) + " |",
        "| " + " | ".join("---" for _ in columns) + " |",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_md_escape(cell(row.get(c))) for c in columns) + " |")
    return "\n".join(lines)
