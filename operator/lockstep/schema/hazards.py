"""The hazard kinds of `lockstep diff` (what `--allow-hazard KIND` accepts), on their own so
that the command line can list them without loading the diff."""

from __future__ import annotations

HAZARDS: dict[str, str] = {
    "drop-table": "drops a table and its rows",
    "drop-column": "drops a column and its values",
    "drop-view": "drops a view the running version may read",
    "drop-type": "drops a type",
    "drop-sequence": "drops a sequence",
    "drop-schema": "drops a schema",
    "drop-extension": "drops an extension",
    "type-change": "changes a column's type in a way that rewrites the table or may lose "
    "data, under ACCESS EXCLUSIVE",
    "not-null-without-default": "makes a column NOT NULL that has no default and no values "
    "for existing rows: validation fails if the table has rows",
    "backfill": "fills existing rows of a new column from a volatile default in one UPDATE",
    "enum-change": "removes or reorders enum values (the type is recreated and the columns "
    "that use it are rewritten)",
    "exclusion-constraint": "adds an exclusion constraint to an existing table (checks every "
    "row under ACCESS EXCLUSIVE; there is no online form)",
}
"""Every hazard kind `--allow-hazard` accepts, with what it means."""
