"""Declarative mode of a DatabaseMigration: a desired schema instead of versioned migrations."""

from __future__ import annotations

from pydantic import Field

from .base import ConfigMapRef, Model, SecretKeyRef, StatusModel

APPROVE_ANNOTATION = "lockstep.dev/approve-plan"
"""Set to a plan's hash (status.declarative.planHash) to let the operator apply that plan."""


class DevDatabase(Model):
    """A server where lockstep may create and drop scratch databases."""

    url_from: SecretKeyRef = Field(
        alias="urlFrom",
        description="Secret key holding the URL of a development server (CREATEDB needed).",
    )


class DesiredSchemaSource(Model):
    """The schema the database should have, as SQL: the operator generates the migrations."""

    config_map_ref: ConfigMapRef = Field(
        description="A ConfigMap whose *.sql keys, in key order, create the desired schema "
        "(CREATE TABLE, CREATE INDEX, CREATE VIEW, ...).",
    )
    allow_hazards: list[str] = Field(
        default_factory=list,
        description="Hazard kinds the generated plan may contain (drop-table, drop-column, "
        "type-change, ...; see `lockstep diff --help`). A plan with others is refused.",
    )
    dev_database: DevDatabase | None = Field(
        default=None,
        description="Where to load the desired schema to normalise it (when unset: a scratch "
        "database on the target's own server, which needs CREATEDB).",
    )


class DeclarativeMigration(StatusModel):
    """One generated migration of a plan."""

    version: str = Field(description="Version it is applied as.")
    name: str = Field(description="Name (expand, expand_indexes, contract, ...).")
    phase: str = Field(description="expand or contract.")
    up: str = Field(description="The SQL.")
    down: str | None = Field(default=None, description="The SQL that reverts it.")


class DeclarativeStatus(StatusModel):
    """The plan generated from the desired schema, and the one being applied."""

    plan_hash: str = Field(
        default="",
        description="Hash of the current plan; approve it with the annotation "
        "lockstep.dev/approve-plan=<hash>. Empty when the database matches the desired schema.",
    )
    migrations: list[DeclarativeMigration] = Field(
        default_factory=list, description="The current plan's migrations."
    )
    hazards: list[str] = Field(default_factory=list, description="Hazards the plan contains.")
    approved_hash: str | None = Field(
        default=None, description="Hash of the last approved plan (applied, or being applied)."
    )
    approved: list[DeclarativeMigration] = Field(
        default_factory=list, description="The approved plan's migrations (applied in order)."
    )
    message: str | None = Field(default=None, description="What the declarative mode is doing.")
