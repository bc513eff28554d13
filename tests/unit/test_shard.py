"""Sharding: label selectors in Kubernetes' syntax become kopf's label filters on lockstep's kinds.

Two instances on disjoint selectors against a real cluster: tests/e2e/test_sharding.py."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from lockstep.shard import Requirement, Shard, kopf_labels, matches, parse_selector


def test_equality_inequality_sets_and_existence_parse() -> None:
    assert parse_selector("a=1, b==2,c!=3, d in (x, y),e notin (z),f,!g") == (
        Requirement("a", "=", frozenset({"1"})),
        Requirement("b", "=", frozenset({"2"})),
        Requirement("c", "!=", frozenset({"3"})),
        Requirement("d", "in", frozenset({"x", "y"})),
        Requirement("e", "notin", frozenset({"z"})),
        Requirement("f", "exists"),
        Requirement("g", "!"),
    )


def test_an_empty_selector_selects_everything() -> None:
    assert parse_selector("  ") == ()
    assert matches((), {"any": "thing"})


@pytest.mark.parametrize(
    ("selector", "labels", "selected"),
    [
        ("lockstep.dev/shard=a", {"lockstep.dev/shard": "a"}, True),
        ("lockstep.dev/shard=a", {"lockstep.dev/shard": "b"}, False),
        ("lockstep.dev/shard=a", {}, False),
        ("tier!=gold", {}, True),  # as in Kubernetes: no label is not equal
        ("tier!=gold", {"tier": "gold"}, False),
        ("tier in (gold,silver)", {"tier": "silver"}, True),
        ("tier in (gold,silver)", {}, False),
        ("tier notin (gold)", {}, True),
        ("legacy", {"legacy": ""}, True),
        ("!legacy", {"legacy": "yes"}, False),
        ("team=a,tier!=gold", {"team": "a", "tier": "bronze"}, True),
    ],
)
def test_selectors_select_as_in_kubernetes(
    selector: str, labels: dict[str, str], selected: bool
) -> None:
    assert matches(parse_selector(selector), labels) is selected


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("tier in (gold", "unbalanced"),
        ("tier in ()", "at least one value"),
        ("a=1,,b=2", "empty term"),
        ("Bad Key=1", "invalid label"),
        ("key=in valid", "invalid label"),
        ("-dash=1", "invalid label key"),
    ],
)
def test_a_malformed_selector_is_refused_with_the_reason(selector: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_selector(selector)


def test_kopf_filters_use_plain_values_where_they_can() -> None:
    labels = kopf_labels(parse_selector("shard=a,ready,!legacy"))
    assert labels == {"shard": "a", "ready": kopf.PRESENT, "legacy": kopf.ABSENT}


def test_other_terms_become_callables_that_kopf_calls_with_the_label_value() -> None:
    labels = kopf_labels(parse_selector("tier in (gold,silver),tier!=silver,team notin (x)"))
    tier, team = labels["tier"], labels["team"]
    assert tier("gold") and not tier("silver") and not tier(None)
    assert team(None, body={}) and not team("x")


def test_the_finalizer_is_the_instances_own_only_with_a_label_selector() -> None:
    assert Shard("shard-a", selector="s=a").finalizer("lockstep.dev/finalizer") == (
        "lockstep.dev/finalizer-shard-a"
    )
    assert Shard("lockstep", namespaces=("team-a",)).finalizer("lockstep.dev/finalizer") == (
        "lockstep.dev/finalizer"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"instance": "Shard_A"}, "invalid instance name"),
        ({"namespaces": ("team-*",)}, "exact namespace names"),
        ({"selector": "a in (b"}, "unbalanced"),
    ],
)
def test_an_instance_with_bad_settings_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Shard(**kwargs)


def test_restricting_a_registry_filters_lockstep_kinds_only() -> None:
    registry = kopf.OperatorRegistry()

    @kopf.daemon("lockstep.dev", "v1alpha1", "featurereleases", registry=registry)
    async def release(**_: Any) -> None: ...

    @kopf.index("lockstep.dev", "v1alpha1", "databasemigrations", registry=registry)
    async def migrations(**_: Any) -> None: ...

    @kopf.index("apps", "v1", "deployments", labels={"managed": "yes"}, registry=registry)
    async def deployments(**_: Any) -> None: ...

    Shard("shard-a", selector="lockstep.dev/shard=a").restrict(registry)
    (daemon,) = registry._spawning.get_all_handlers()
    index_migrations, index_deployments = registry._indexing.get_all_handlers()
    assert daemon.labels == {"lockstep.dev/shard": "a"}
    assert index_migrations.labels == {"lockstep.dev/shard": "a"}
    assert index_deployments.labels == {"managed": "yes"}
