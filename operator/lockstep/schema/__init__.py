"""Knowledge of a live database: its catalog (tables, columns, constraints, indexes, views,
types), its size and activity, the locks a statement really takes, and migrations generated
from a desired schema.

- `catalog`: the schema model and the psycopg catalog queries that read it (`introspect`).
- `live`: facts for the lint and `lockstep analyze` (sizes, versions, sessions).
- `scratch`: scratch databases on the same server (or a dev server) to load schemas into.
- `probe`: runs statements on a scratch copy and reads their locks from `pg_locks`.
- `diff`: desired catalog - current catalog -> ordered, online-safe expand/contract migrations.
- `compat`: which pending statements break the version that is running now.
- `declarative`: the pure decisions of the operator's declarative mode.
"""
