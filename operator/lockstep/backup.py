"""The backup and restore Jobs of a DatabaseMigration, built as plain dicts (no I/O here).

A backup Job runs `pg_dump --format=custom` into the backup volume and reports the dump's
path, size and sha256 as a one-line JSON termination message, which the operator reads from
the pod status (`parse_result`). A restore Job checks the dump's sha256 first, then brings the
database back to exactly the dump's content in one transaction (every user schema dropped,
the dump replayed with psql).

The scripts take every filesystem path from an environment variable set in the Job, never a
literal path, so the same script runs unchanged on a test machine with other paths. The
database URL reaches the container only by reference to its Secret.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from .api.base import SecretKeyRef
from .api.migration import BackupRecord, BackupSpec
from .redact import redact
from .release.world import label_value

__all__ = [
    "BACKUP_MOUNT",
    "BackupError",
    "BackupResult",
    "backup_job",
    "backup_job_name",
    "dump_prefix",
    "parse_result",
    "restore_job",
    "restore_job_name",
    "termination_message",
]

BACKUP_MOUNT = "/backups"
TMP_MOUNT = "/tmp"  # noqa: S108 - the mount point of the pod's own emptyDir
TERMINATION_LOG = "/dev/termination-log"
POSTGRES_UID = 70
"""uid and gid of the postgres user in the official postgres alpine images."""
CONNECT_TIMEOUT_SECONDS = 30
"""libpq waits forever for an unreachable host without a connect timeout."""

LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MIGRATION = "lockstep.dev/migration"
ANNOTATION_BACKUP = "lockstep.dev/backup"
ANNOTATION_SCHEMA_VERSION = "lockstep.dev/schema-version"
ANNOTATION_SHA256 = "lockstep.dev/backup-sha256"

MAX_NAME = 63
MAX_TOKEN = 20
# "<migration part>-restore-<token>" fits in 63 characters.
MAX_MIGRATION_PART = MAX_NAME - len("-restore-") - MAX_TOKEN
HASH_LENGTH = 6
MAX_MESSAGE_ECHO = 200

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SAFE_PATH = re.compile(r"^[A-Za-z0-9._/-]+$")


class BackupError(Exception):
    """A backup or restore input or result that cannot be used."""


@dataclass(frozen=True)
class BackupResult:
    """What a backup (or restore) Job reports: the dump's path inside the volume, size, sha256."""

    path: str
    size_bytes: int
    sha256: str
    at: str | None = None
    """Backup: when the dump's snapshot was taken. Restore: when the data was replaced."""
    # How long the dump (or restore) took, in whole seconds; not part of what the result is.
    seconds: int | None = field(default=None, compare=False)


# ------------------------------------------------------------------------------- names


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


def _migration_part(migration_name: str) -> str:
    """The migration name as a DNS-1123 label piece; shortened with a hash when altered."""
    clean = re.sub(r"[^a-z0-9-]+", "-", migration_name.lower()).strip("-")
    if clean == migration_name and len(clean) <= MAX_MIGRATION_PART:
        return clean
    # A hash of the original keeps two migrations that shorten alike apart.
    head = clean[: MAX_MIGRATION_PART - HASH_LENGTH - 1].rstrip("-")
    return f"{head}-{_digest(migration_name)}" if head else _digest(migration_name)


def _token_part(token: str) -> str:
    clean = re.sub(r"[^a-z0-9]+", "", token.lower())
    if not clean:
        raise ValueError(f"token {token!r} has no letters or digits to name a Job with")
    if len(clean) <= MAX_TOKEN:
        return clean
    return clean[: MAX_TOKEN - HASH_LENGTH - 1] + _digest(token)[: HASH_LENGTH + 1]


def dump_prefix(migration_name: str) -> str:
    """The name prefix of every backup (Job and dump file) of one migration."""
    return f"{_migration_part(migration_name)}-backup-"


def backup_job_name(migration_name: str, token: str) -> str:
    """Name of a backup Job (and of its dump): deterministic, a DNS-1123 label.

    The token has only lowercase letters and digits once cleaned, so the retention of one
    migration can never match the dumps of another whose name extends this one's.
    """
    return dump_prefix(migration_name) + _token_part(token)


def restore_job_name(migration_name: str, token: str) -> str:
    """Name of a restore Job: deterministic, a DNS-1123 label."""
    return f"{_migration_part(migration_name)}-restore-{_token_part(token)}"


# ----------------------------------------------------------------------------- scripts

# Shared by both scripts: checks, failure reporting and masking of the connection URL.
_PRELUDE = r"""
set -u
set -f
umask 077
started=$(date +%s)

# Prints stdin with the database URL, its password and any other URL password masked.
mask() {
  awk '
    function hide(secret, text,   i, out) {
      if (length(secret) < 4) return text
      out = ""
      while ((i = index(text, secret)) > 0) {
        out = out substr(text, 1, i - 1) "***"
        text = substr(text, i + length(secret))
      }
      return out text
    }
    BEGIN {
      url = ENVIRON["DATABASE_URL"]
      authority = url
      i = index(authority, "://"); if (i > 0) authority = substr(authority, i + 3)
      i = index(authority, "/"); if (i > 0) authority = substr(authority, 1, i - 1)
      password = ""
      if (match(authority, /.*@/)) {
        userinfo = substr(authority, 1, RLENGTH - 1)
        i = index(userinfo, ":"); if (i > 0) password = substr(userinfo, i + 1)
      }
    }
    {
      line = hide(password, hide(url, $0))
      gsub(/:\/\/[^:\/@ ]*:[^@ ]*@/, "://***@", line)
      gsub(/[Pp][Aa][Ss][Ss][Ww][Oo][Rr][Dd] *= *[^ &]*/, "password=***", line)
      print line
    }'
}

# Ends the script: a short, masked reason in the termination log and on stderr.
fail() {
  reason=$(printf '%s\n' "$1" | mask | tr '\n\t' '  ' | tr -s ' ' | sed 's/^ //; s/ $//' \
    | cut -c 1-1000)
  printf '%s: %s\n' "$OPERATION" "$reason" >&2
  if [ -n "${TERMINATION_LOG:-}" ]; then
    printf '%s failed: %s\n' "$OPERATION" "$reason" > "$TERMINATION_LOG"
  fi
  exit 1
}

# The error output of a client, as one masked line.
summary() {
  mask < "$1" >&2
  mask < "$1" | tr '\n\t' '  ' | tr -s ' '
}

require() {
  for name in "$@"; do
    eval "value=\${$name:-}"
    [ -n "$value" ] || fail "environment variable $name is not set"
  done
}

# Sets size and sum to the dump's size in bytes and its sha256.
measure() {
  size=$(wc -c < "$1" | tr -d ' ')
  sum=$(sha256sum < "$1") || return 1
  sum=${sum%% *}
  [ -n "$size" ] && [ -n "$sum" ]
}

# The result, with how long the Job's work took in whole seconds.
result() {
  printf '{"path":"%s","sizeBytes":%s,"sha256":"%s","at":"%s","seconds":%s}\n' "$1" "$2" "$3" \
    "$4" "$(($(date +%s) - started))" > "$TERMINATION_LOG"
}

# The database's clock, as RFC 3339 UTC with microseconds.
CLOCK="to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
"""

# libpq expands a connection URI only in a dbname given as an argument: a URI in PGDATABASE
# is taken as a literal database name (checked with pg_dump 15), so the URL goes on the
# command line as --dbname="$DATABASE_URL". It is visible there only inside the container,
# never in the Job, and every message the script writes is masked.
_BACKUP_SCRIPT = (
    _PRELUDE
    + r"""
OPERATION=backup
require DATABASE_URL BACKUP_ROOT BACKUP_DIR BACKUP_NAME DUMP_PREFIX RETENTION TMPDIR \
  TERMINATION_LOG

errors="$TMPDIR/lockstep-backup.err"
dump="$BACKUP_DIR/$BACKUP_NAME.dump"
partial="$BACKUP_DIR/.$BACKUP_NAME.dump.partial"
trap 'rm -f "$partial"' EXIT

mkdir -p "$BACKUP_DIR" 2> "$errors" \
  || fail "cannot create the backup directory: $(summary "$errors")"

# The dump is taken from a snapshot that a session of our own exports and holds, so that the
# moment it was taken is known exactly: writes committed after it are not in the dump.
control="$TMPDIR/lockstep-snapshot.fifo"
snapshot_file="$TMPDIR/lockstep-snapshot.txt"
rm -f "$control" "$snapshot_file"
mkfifo "$control" || fail "cannot create $control"
psql --no-psqlrc --quiet --no-password --set=ON_ERROR_STOP=1 --dbname="$DATABASE_URL" \
  < "$control" > "$TMPDIR/lockstep-snapshot.out" 2> "$errors" &
holder=$!
exec 3> "$control"
printf '%s\n' "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;" \
  "\\copy (SELECT pg_export_snapshot(), $CLOCK) TO '$snapshot_file.partial' WITH (FORMAT text)" \
  "\\! mv '$snapshot_file.partial' '$snapshot_file'" >&3
waited=0
until [ -s "$snapshot_file" ]; do
  kill -0 "$holder" 2> "$TMPDIR/lockstep-kill.err" \
    || fail "cannot take a snapshot: $(summary "$errors")"
  waited=$((waited + 1))
  [ "$waited" -lt 600 ] || fail "the snapshot session did not answer within 60s"
  sleep 0.1
done
snapshot=$(cut -f1 "$snapshot_file")
taken=$(cut -f2 "$snapshot_file")
pg_dump --format=custom --no-password --snapshot="$snapshot" --file="$partial" \
  --dbname="$DATABASE_URL" 2> "$errors" || fail "pg_dump failed: $(summary "$errors")"
printf 'COMMIT;\n' >&3
exec 3>&-
wait "$holder" || true
# A dump under its final name is always complete: synced first, then renamed.
sync "$partial" 2> "$errors" || sync
mv -f "$partial" "$dump" 2> "$errors" || fail "cannot rename the dump: $(summary "$errors")"
sync "$BACKUP_DIR" 2> "$errors" || sync

measure "$dump" || fail "cannot read back the dump $BACKUP_NAME.dump"

# Retention: keep the newest RETENTION dumps of this migration (the new one always) and
# touch nothing else in the directory: only names of the form <DUMP_PREFIX><token>.dump.
# Age is the modification time from ls -t, the only way to order files by age in POSIX sh
# (busybox compares whole seconds); the names are matched below.
kept=1
# shellcheck disable=SC2045
for name in $(ls -1t "$BACKUP_DIR"); do
  case "$name" in
    "$BACKUP_NAME.dump") continue ;;
    "$DUMP_PREFIX"*.dump) ;;
    *) continue ;;
  esac
  token=${name#"$DUMP_PREFIX"}
  token=${token%.dump}
  case "$token" in '' | *[!a-z0-9]*) continue ;; esac
  if [ "$kept" -lt "$RETENTION" ]; then
    kept=$((kept + 1))
  else
    rm -f "$BACKUP_DIR/$name" || echo "backup: could not delete the old dump $name" >&2
  fi
done

result "${dump#"$BACKUP_ROOT"/}" "$size" "$sum" "$taken"
"""
)

_RESTORE_SCRIPT = (
    _PRELUDE
    + r"""
OPERATION=restore
require DATABASE_URL BACKUP_ROOT BACKUP_FILE EXPECTED_SHA256 TMPDIR TERMINATION_LOG \
  LOCK_TIMEOUT LOCK_RETRIES

errors="$TMPDIR/lockstep-restore.err"
path=${BACKUP_FILE#"$BACKUP_ROOT"/}

# Nothing touches the database before the dump is known to be the one that was taken.
[ -f "$BACKUP_FILE" ] || fail "dump $path not found in the backup volume"
measure "$BACKUP_FILE" || fail "cannot read the dump $path"
[ "$sum" = "$EXPECTED_SHA256" ] \
  || fail "dump $path has sha256 $sum but $EXPECTED_SHA256 was expected: not restoring it"

# The database goes back to exactly what the dump holds: objects created after the backup
# (a table a later migration added, say) would otherwise survive pg_restore --clean. So every
# user schema is dropped and the dump replayed, in one transaction: all of it or nothing.
script="$TMPDIR/lockstep-restore.sql"
reset="$TMPDIR/lockstep-reset.sql"
pg_restore --clean --if-exists --no-owner --file="$script" "$BACKUP_FILE" 2> "$errors" \
  || fail "cannot read the dump $path: $(summary "$errors")"
cat > "$reset" <<'SQL'
DO $reset$
DECLARE
  schema_name text;
  table_name text;
BEGIN
  -- Tables first, in one order: a writer holding a table lock may still need its sequence,
  -- so taking the sequences first (as DROP SCHEMA would) could deadlock with it.
  FOR table_name IN
    SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND n.nspname NOT LIKE 'pg\_%'
      AND n.nspname <> 'information_schema'
    ORDER BY 1
  LOOP
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', table_name);
  END LOOP;
  FOR schema_name IN
    SELECT nspname FROM pg_namespace
    WHERE nspname NOT LIKE 'pg\_%' AND nspname <> 'information_schema'
  LOOP
    EXECUTE format('DROP SCHEMA %I CASCADE', schema_name);
  END LOOP;
  CREATE SCHEMA public;
END
$reset$;
SQL
# Every statement waits at most LOCK_TIMEOUT for a lock (so the traffic queued behind the
# restore waits no longer); a lock timeout rolls the whole restore back and it is tried again.
restored="$TMPDIR/lockstep-restored.txt"
stamp="$TMPDIR/lockstep-stamp.sql"
printf '%s\n' "\\copy (SELECT $CLOCK) TO '$restored' WITH (FORMAT text)" > "$stamp"
attempt=1
pause=1
while :; do
  rm -f "$restored"
  if PGOPTIONS="-c lock_timeout=$LOCK_TIMEOUT" psql --no-psqlrc --quiet --single-transaction \
      --set=ON_ERROR_STOP=1 --no-password --dbname="$DATABASE_URL" --file="$reset" \
      --file="$stamp" --file="$script" > "$TMPDIR/lockstep-restore.out" 2> "$errors"; then
    break
  fi
  grep -q -e "lock timeout" -e "deadlock detected" "$errors" \
    && [ "$attempt" -le "$LOCK_RETRIES" ] \
    || fail "restore failed, nothing was changed: $(summary "$errors")"
  echo "restore: lock timeout (attempt $attempt), trying again in ${pause}s" >&2
  sleep "$pause"
  attempt=$((attempt + 1))
  pause=$((pause * 2 > 30 ? 30 : pause * 2))
done
at=""
[ -f "$restored" ] && at=$(cat "$restored")

result "$path" "$size" "$sum" "$at"
"""
)


# -------------------------------------------------------------------------------- jobs


def _check_sub_path(sub_path: str) -> str:
    """The destination's subPath without surrounding slashes; it must stay inside the volume."""
    clean = sub_path.strip("/")
    if not clean:
        return ""
    parts = PurePosixPath(clean).parts
    if not _SAFE_PATH.match(clean) or any(part in (".", "..") for part in parts):
        raise BackupError(
            f"backup subPath {sub_path!r} must be a relative path of letters, digits, '.', '_', "
            "'-' and '/', without '.' or '..' components"
        )
    return "/".join(parts)


def _labels(migration_name: str, component: str) -> dict[str, str]:
    return {
        LABEL_NAME: "lockstep",
        "app.kubernetes.io/managed-by": "lockstep",
        LABEL_COMPONENT: component,
        LABEL_MIGRATION: label_value(migration_name),
    }


def _secret_env(url_secret: SecretKeyRef) -> dict[str, Any]:
    return {
        "name": "DATABASE_URL",
        "valueFrom": {"secretKeyRef": {"name": url_secret.name, "key": url_secret.key}},
    }


def _plain_env(values: dict[str, str]) -> list[dict[str, Any]]:
    return [{"name": name, "value": value} for name, value in values.items()]


def _pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": POSTGRES_UID,
        "runAsGroup": POSTGRES_UID,
        "fsGroup": POSTGRES_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": POSTGRES_UID,
        "runAsGroup": POSTGRES_UID,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


BACKUP_JOB_TTL_SECONDS = 3600
"""A finished backup Job goes after an hour (its result is in the status by then; were it not,
the same backup is simply taken again). Restore Jobs stay: a restore must never run twice."""


def _job(
    *,
    ttl_seconds: int | None = None,
    name: str,
    migration_name: str,
    namespace: str,
    owner: dict[str, Any],
    spec: BackupSpec,
    component: str,
    script: str,
    env: list[dict[str, Any]],
    annotations: dict[str, str],
) -> dict[str, Any]:
    labels = _labels(migration_name, component)
    pod_labels = {**(spec.pod_labels or {}), **labels}
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # Also on the pod, so that the node stops the container at the deadline.
        "activeDeadlineSeconds": spec.active_deadline_seconds,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security_context(),
        "containers": [
            {
                "name": component,
                "image": spec.image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["/bin/sh", "-c", script],
                "env": env,
                "volumeMounts": [
                    {"name": "backups", "mountPath": BACKUP_MOUNT},
                    {"name": "tmp", "mountPath": TMP_MOUNT},
                ],
                "securityContext": _container_security_context(),
                "terminationMessagePath": TERMINATION_LOG,
                "terminationMessagePolicy": "File",
            }
        ],
        "volumes": [
            {
                "name": "backups",
                "persistentVolumeClaim": {
                    "claimName": spec.destination.persistent_volume_claim.claim_name
                },
            },
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if spec.service_account_name:
        pod_spec["serviceAccountName"] = spec.service_account_name
    template_metadata: dict[str, Any] = {"labels": pod_labels}
    if spec.pod_annotations:
        template_metadata["annotations"] = dict(spec.pod_annotations)
    job_spec: dict[str, Any] = {
        # One try: a failed backup stops the migration, a failed restore needs a human.
        "backoffLimit": 0,
        "activeDeadlineSeconds": spec.active_deadline_seconds,
        "template": {"metadata": template_metadata, "spec": pod_spec},
    }
    if ttl_seconds is not None:
        job_spec["ttlSecondsAfterFinished"] = ttl_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [dict(owner)],
        },
        "spec": job_spec,
    }


def _common_env(client: str) -> dict[str, str]:
    return {
        "BACKUP_ROOT": BACKUP_MOUNT,
        "TMPDIR": TMP_MOUNT,
        "TERMINATION_LOG": TERMINATION_LOG,
        "PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT_SECONDS),
        "PGAPPNAME": f"lockstep-{client}",
    }


def backup_job(
    *,
    migration_name: str,
    namespace: str,
    owner: dict[str, Any],
    url_secret: SecretKeyRef,
    spec: BackupSpec,
    backup_name: str,
    schema_version: str | None,
) -> dict[str, Any]:
    """The Job that dumps the database to `<subPath>/<backup_name>.dump` in the volume.

    `backup_name` is also the Job's name and comes from `backup_job_name`, so that the
    retention of this migration finds its dumps by name.
    """
    prefix = dump_prefix(migration_name)
    token = backup_name.removeprefix(prefix)
    if not backup_name.startswith(prefix) or not re.fullmatch(rf"[a-z0-9]{{1,{MAX_TOKEN}}}", token):
        raise BackupError(
            f"backup name {backup_name!r} was not made by backup_job_name for migration "
            f"{migration_name!r} (expected {prefix}<token>)"
        )
    sub_path = _check_sub_path(spec.destination.persistent_volume_claim.sub_path)
    env = [
        _secret_env(url_secret),
        *_plain_env(
            {
                **_common_env("backup"),
                "BACKUP_DIR": f"{BACKUP_MOUNT}/{sub_path}" if sub_path else BACKUP_MOUNT,
                "BACKUP_NAME": backup_name,
                "DUMP_PREFIX": prefix,
                "RETENTION": str(spec.retention),
            }
        ),
    ]
    annotations = {ANNOTATION_BACKUP: backup_name}
    if schema_version is not None:
        annotations[ANNOTATION_SCHEMA_VERSION] = schema_version
    return _job(
        ttl_seconds=BACKUP_JOB_TTL_SECONDS,
        name=backup_name,
        migration_name=migration_name,
        namespace=namespace,
        owner=owner,
        spec=spec,
        component="backup",
        script=_BACKUP_SCRIPT,
        env=env,
        annotations=annotations,
    )


def restore_job(
    *,
    migration_name: str,
    namespace: str,
    owner: dict[str, Any],
    url_secret: SecretKeyRef,
    spec: BackupSpec,
    backup: BackupRecord,
    job_name: str,
    lock_timeout_ms: int = 2000,
    lock_retries: int = 10,
) -> dict[str, Any]:
    """The Job that restores `backup` into the database, after checking the dump's sha256.

    Its statements wait at most `lock_timeout_ms` for a lock; a lock timeout rolls the restore
    back and it is tried again, up to `lock_retries` times."""
    path = _check_sub_path(backup.path)
    if not path:
        raise BackupError(f"backup {backup.name!r} has no dump path: it cannot be restored")
    if not _SHA256.match(backup.sha256):
        raise BackupError(
            f"backup {backup.name!r} has no valid sha256 ({backup.sha256!r}): a dump that "
            "cannot be checked is not restored"
        )
    env = [
        _secret_env(url_secret),
        *_plain_env(
            {
                **_common_env("restore"),
                "BACKUP_FILE": f"{BACKUP_MOUNT}/{path}",
                "EXPECTED_SHA256": backup.sha256,
                "LOCK_TIMEOUT": f"{lock_timeout_ms}ms",
                "LOCK_RETRIES": str(lock_retries),
            }
        ),
    ]
    annotations = {ANNOTATION_BACKUP: backup.name, ANNOTATION_SHA256: backup.sha256}
    return _job(
        name=job_name,
        migration_name=migration_name,
        namespace=namespace,
        owner=owner,
        spec=spec,
        component="restore",
        script=_RESTORE_SCRIPT,
        env=env,
        annotations=annotations,
    )


# ------------------------------------------------------------------------------ results


def _echo(message: str) -> str:
    """The start of a message, masked, for an error text."""
    text = redact(message.strip())
    if len(text) > MAX_MESSAGE_ECHO:
        text = text[:MAX_MESSAGE_ECHO] + "..."
    return text


def parse_result(termination_message: str) -> BackupResult:
    """Read a backup or restore Job's termination message (one line of JSON)."""
    text = termination_message.strip()
    if not text:
        raise BackupError("the Job left no termination message")
    try:
        data = json.loads(text)
    except ValueError:
        raise BackupError(f"the Job did not report a result: {_echo(text)}") from None
    if not isinstance(data, dict):
        raise BackupError(f"the Job's result is not a JSON object: {_echo(text)}")
    path, size, sha256 = data.get("path"), data.get("sizeBytes"), data.get("sha256")
    if not isinstance(path, str) or not path:
        raise BackupError(f"the Job's result has no path: {_echo(text)}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise BackupError(f"the Job's result has no valid sizeBytes: {_echo(text)}")
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise BackupError(f"the Job's result has no valid sha256: {_echo(text)}")
    at = data.get("at")
    seconds = data.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        seconds = None
    return BackupResult(
        path=path,
        size_bytes=size,
        sha256=sha256,
        at=at if isinstance(at, str) and at else None,
        seconds=seconds,
    )


def termination_message(pod: dict[str, Any], container: str) -> str | None:
    """The termination message of a finished container in a pod (as a dict), if any."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            terminated = (status.get("state") or {}).get("terminated") or {}
            message = terminated.get("message")
            return message if isinstance(message, str) else None
    return None
