"""The reconcilers' glue around the pure machines: status first and only on the version read,
the last-moment checks before a switch or a scale to zero, what a deleted release leaves
serving, and how the migration reconciler reads claims and decides to stay idle."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from tests.unit.fake_kube import FakeKube
from tests.unit.release_sim import ANALYSIS, spec, template

from lockstep.api.migration import DatabaseMigrationStatus
from lockstep.kube import Kube
from lockstep.migrations import reconcile as migration_reconcile
from lockstep.objects import Snapshot
from lockstep.release import reconcile as release_reconcile
from lockstep.release.world import DeploymentView, MigrationView, ServiceView, World

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def release_object(
    kube: FakeKube, status: dict[str, Any] | None = None, **overrides: Any
) -> Snapshot:
    body = {
        "metadata": {"name": "web", "namespace": "prod", "uid": "u1", "generation": 1},
        "spec": spec(**overrides),
        "status": status or {},
    }
    stored = kube.add("featurereleases", body)
    return Snapshot.of("FeatureRelease", "featurereleases", stored)


def world(service: str | None = None, **deployments: DeploymentView) -> World:
    selector = {"app": "web", **({"lockstep.dev/color": service} if service else {})}
    return World(
        now=NOW,
        service=ServiceView("web", True, selector),
        preview_service=None,
        deployments=deployments,  # type: ignore[arg-type]
        jobs={},
        migration=None,
    )


def as_kube(fake: FakeKube) -> Kube:
    return cast(Kube, fake)


def first_release_at_switch(kube: FakeKube) -> tuple[Snapshot, World]:
    """A first release whose blue colour is available: the next look switches to it."""
    obj = release_object(kube)
    outcome = release_reconcile.reconcile(as_kube(kube), obj, world())
    obj = Snapshot.of("FeatureRelease", "featurereleases", outcome.obj or {})
    revision = obj.status["updatedRevision"]
    blue = DeploymentView("blue", revision, 2, updated=2, ready=2, available=2)
    return obj, world(blue=blue)


# ------------------------------------------------------------------------------ releases


def test_the_status_is_written_before_anything_is_done() -> None:
    kube = FakeKube()
    release_reconcile.reconcile(as_kube(kube), release_object(kube), world())
    assert kube.calls[0] == "patch_status"
    assert kube.calls[1:] == ["apply Deployment web-blue", "scale web-blue 2"]


def test_a_decision_taken_on_an_old_version_of_the_object_does_nothing() -> None:
    kube = FakeKube()
    obj = release_object(kube)
    kube.objects[("featurereleases", "web")]["metadata"]["resourceVersion"] = "999"  # changed
    outcome = release_reconcile.reconcile(as_kube(kube), obj, world())
    assert kube.calls == ["patch_status", "get_custom"]
    assert not kube.applied and not kube.events
    assert outcome.obj is not None and outcome.obj["metadata"]["resourceVersion"] == "999"
    assert outcome.delay < 1


def test_the_service_is_not_switched_to_a_colour_whose_pods_went_away() -> None:
    kube = FakeKube()
    obj, seen = first_release_at_switch(kube)
    kube.available["web-blue"] = 0  # the live Deployment disagrees with the watch
    outcome = release_reconcile.reconcile(as_kube(kube), obj, seen)
    assert "web" not in kube.selectors
    assert "read deployment web-blue" in kube.calls
    assert outcome.delay == 2.0  # looked at again soon


def test_the_service_is_switched_once_the_live_colour_has_its_pods() -> None:
    kube = FakeKube()
    obj, seen = first_release_at_switch(kube)
    kube.available["web-blue"] = 2
    release_reconcile.reconcile(as_kube(kube), obj, seen)
    assert kube.selectors["web"] == {"app": "web", "lockstep.dev/color": "blue"}


def test_a_switch_the_service_already_shows_is_not_sent_again() -> None:
    kube = FakeKube()
    obj, seen = first_release_at_switch(kube)
    kube.available["web-blue"] = 2
    kube.selectors["web"] = {"app": "web", "lockstep.dev/color": "blue"}  # the watch lags
    release_reconcile.reconcile(as_kube(kube), obj, seen)
    assert not [c for c in kube.calls if c.startswith("apply Service")]


def test_a_colour_the_live_service_selects_is_never_scaled_to_zero() -> None:
    kube = FakeKube()
    status = {
        "step": "RolledBack",
        "stableRevision": "s",
        "updatedRevision": "n",
        "activeColor": "blue",
        "previewColor": "green",
        "stable": {"revision": "s", "color": "blue", "replicas": 2},
        "scaleDownAt": "2025-01-01T00:00:00.000Z",
    }
    obj = release_object(kube, status)
    kube.selectors["web"] = {"app": "web", "lockstep.dev/color": "green"}  # the watch lags
    seen = world(
        "blue",
        blue=DeploymentView("blue", "s", 2, updated=2, ready=2, available=2),
        green=DeploymentView("green", "n", 2, updated=2, ready=2, available=2),
    )
    release_reconcile.reconcile(as_kube(kube), obj, seen)
    assert "web-green" not in kube.replicas


def test_an_invalid_spec_is_reported_once_and_nothing_happens() -> None:
    kube = FakeKube()
    bad = dict(ANALYSIS, interval="1m", duration="30s")
    obj = release_object(kube, analysis=bad)
    outcome = release_reconcile.reconcile(as_kube(kube), obj, world())
    assert outcome.obj is not None
    status = outcome.obj["status"]
    assert status["phase"] == "Invalid"
    assert "Value error" not in status["message"]
    assert (
        "analysis: analysis.duration (30s) is shorter than analysis.interval" in status["message"]
    )
    again = Snapshot.of("FeatureRelease", "featurereleases", outcome.obj)
    release_reconcile.reconcile(as_kube(kube), again, world())
    assert [e[1] for e in kube.events] == ["InvalidSpec"]
    assert not kube.applied


def test_a_deleted_release_leaves_its_stable_colour_serving() -> None:
    kube = FakeKube()
    status = {
        "step": "Analysis",
        "stableRevision": "s",
        "activeColor": "green",
        "stable": {"revision": "s", "color": "blue"},
    }
    obj = release_object(kube, status)
    kube.selectors["web"] = {"app": "web", "lockstep.dev/color": "green"}
    kube.available["web-blue"] = 2
    release_reconcile.keep_serving(as_kube(kube), obj)
    assert kube.selectors["web"]["lockstep.dev/color"] == "blue"
    assert kube.orphaned == ["web-blue"]
    assert [e[1] for e in kube.events] == ["StableKept"]


def test_a_deleted_release_that_never_went_live_keeps_nothing() -> None:
    kube = FakeKube()
    release_reconcile.keep_serving(as_kube(kube), release_object(kube, {"step": "Deploy"}))
    assert not kube.orphaned and not kube.applied


def test_a_deleted_release_whose_stable_colour_has_no_pods_says_so() -> None:
    kube = FakeKube()
    status = {"step": "Done", "stableRevision": "s", "activeColor": "blue"}
    release_reconcile.keep_serving(as_kube(kube), release_object(kube, status))
    assert not kube.orphaned
    assert [e[1] for e in kube.events] == ["NothingServes"]


def test_controls_are_read_from_annotations() -> None:
    controls = release_reconcile.controls_from(
        {"lockstep.dev/request": "Promote@42", "lockstep.dev/paused": "TRUE"}
    )
    assert (controls.paused, controls.request_action, controls.request_id) == (
        True,
        "promote",
        "Promote@42",
    )
    assert not release_reconcile.controls_from({}).paused


def test_a_changed_template_applies_the_idle_colour_without_a_replica_count() -> None:
    kube = FakeKube()
    status = {
        "step": "Done",
        "stableRevision": "s",
        "updatedRevision": "s",
        "activeColor": "blue",
        "previewColor": "blue",
        "stable": {"revision": "s", "color": "blue", "replicas": 2},
    }
    obj = release_object(kube, status, template=template("v2"))
    seen = world("blue", blue=DeploymentView("blue", "s", 2, updated=2, ready=2, available=2))
    release_reconcile.reconcile(as_kube(kube), obj, seen)
    [deployment] = [b for b in kube.applied if b["kind"] == "Deployment"]
    assert deployment["metadata"]["name"] == "web-green"
    assert "replicas" not in deployment["spec"]
    assert kube.replicas == {"web-green": 2}


# ---------------------------------------------------------------------------- migrations


def test_a_claim_is_read_from_the_release_status() -> None:
    status = {
        "observedGeneration": 3,
        "database": {"migration": "db", "needs": "002", "tolerates": "003", "settled": True},
    }
    claim = migration_reconcile.claim_of("web", 3, status, "db")
    assert (claim.current, claim.claim.needs, claim.claim.tolerates) == (True, "002", "003")


def test_a_release_that_has_not_caught_up_or_claims_another_database_claims_nothing() -> None:
    stale = migration_reconcile.claim_of("web", 4, {"observedGeneration": 3}, "db")
    assert not stale.current and stale.claim.needs is None
    other = migration_reconcile.claim_of(
        "web", 1, {"observedGeneration": 1, "database": {"migration": "x", "needs": "9"}}, "db"
    )
    assert other.claim.needs is None
    broken = migration_reconcile.claim_of(
        "web", 1, {"observedGeneration": 1, "database": {"migration": "db", "needs": [1]}}, "db"
    )
    assert broken.claim.needs is None


def test_claims_are_gathered_from_the_releases_that_use_the_database() -> None:
    items = [
        {"metadata": {"name": "a", "generation": 1}, "spec": {"migration": {"ref": "db"}}},
        {"metadata": {"name": "b", "generation": 1}, "spec": {"migration": {"ref": "other"}}},
        {"metadata": {"name": "c", "generation": 1}, "spec": {}},
    ]
    assert [c.release for c in migration_reconcile.claims_of(items, "db")] == ["a"]


def test_an_idle_migration_is_quiet_until_an_input_changes() -> None:
    def status(phase: str, reason: str = "", operation: bool = False) -> DatabaseMigrationStatus:
        raw: dict[str, Any] = {"phase": phase}
        if reason:
            raw["conditions"] = [
                {"type": "Stalled", "status": "True", "reason": reason, "lastTransitionTime": "t"}
            ]
        if operation:
            raw["operation"] = {"kind": "Apply", "serial": 1, "startedAt": "t"}
        return DatabaseMigrationStatus.model_validate(raw)

    assert migration_reconcile.quiet(status("Ready"))
    assert migration_reconcile.quiet(status("WaitingForContract"))
    assert migration_reconcile.quiet(status("Failed", "BackupFailed"))
    assert not migration_reconcile.quiet(status("Failed", "DatabaseUnreachable"))
    assert not migration_reconcile.quiet(status("Ready", operation=True))
    assert not migration_reconcile.quiet(status("Migrating"))


def migration_object(kube: FakeKube, **spec: Any) -> Snapshot:
    body = {
        "metadata": {"name": "db", "namespace": "prod", "uid": "u2", "generation": 1},
        "spec": {
            "database": {"urlFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
            "source": {"configMapRef": {"name": "migrations"}},
            "policy": {"backup": "never"},
            **spec,
        },
    }
    stored = kube.add("databasemigrations", body)
    return Snapshot.of("DatabaseMigration", "databasemigrations", stored)


def test_a_missing_secret_is_retried_with_one_event() -> None:
    kube = FakeKube()
    obj = migration_object(kube)
    world_ = migration_reconcile.MigrationWorld(jobs={}, claims=[])
    outcome = migration_reconcile.reconcile(as_kube(kube), obj, world_)
    assert outcome.obj is not None
    assert outcome.obj["status"]["phase"] == "Retrying"
    reconciling = outcome.obj["status"]["conditions"][1]
    assert (reconciling["type"], reconciling["status"]) == ("Reconciling", "True")
    assert "Secret db not found" in outcome.obj["status"]["message"]
    assert not outcome.quiet, "a Secret is not watched: look again later"
    again = Snapshot.of("DatabaseMigration", "databasemigrations", outcome.obj)
    migration_reconcile.reconcile(as_kube(kube), again, world_)
    assert [e[1] for e in kube.events] == ["SecretNotFound"]


def test_a_missing_source_stalls_quietly_until_the_configmap_appears() -> None:
    kube = FakeKube(secrets={("db", "url"): "postgresql://u:p@127.0.0.1:1/db"})
    obj = migration_object(kube)
    outcome = migration_reconcile.reconcile(
        as_kube(kube), obj, migration_reconcile.MigrationWorld(jobs={}, claims=[])
    )
    assert outcome.obj is not None and outcome.quiet
    assert outcome.obj["status"]["phase"] == "Retrying"
    assert outcome.obj["status"]["conditions"][0]["reason"] == "SourceNotFound"


def test_an_invalid_migration_spec_is_quiet() -> None:
    kube = FakeKube()
    obj = migration_object(kube, policy={"backup": "auto"})  # no backup destination
    outcome = migration_reconcile.reconcile(
        as_kube(kube), obj, migration_reconcile.MigrationWorld(jobs={}, claims=[])
    )
    assert outcome.obj is not None and outcome.quiet
    assert outcome.obj["status"]["phase"] == "Invalid"


def test_the_migration_view_of_a_release_is_empty_when_it_does_not_exist() -> None:
    assert not MigrationView(exists=False).acks


def test_a_status_write_removes_nested_fields_that_went_away() -> None:
    from lockstep.objects import apply_merge_patch, merge_patch

    old = {"database": {"needs": "1", "request": {"id": "web/2"}}, "gone": 1, "same": [1]}
    new = {"database": {"needs": "1"}, "same": [1], "added": {"a": 1}}
    patch = merge_patch(old, new)
    assert patch == {"gone": None, "database": {"request": None}, "added": {"a": 1}}
    assert apply_merge_patch(old, patch) == new
