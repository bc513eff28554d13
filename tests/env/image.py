"""The operator image: built from the project's Dockerfile with buildah, run from its filesystem.

Building (`build_image`, cached in ~/.cache/lockstep/image-<key>, the key a hash of the
Dockerfile, the lock, the sources and the recipe below):
1. the base: no container registry is reachable here, so a Debian base with python3 and
   python3-venv is made with mmdebstrap (cached on its own) and passed as `--build-arg BASE`;
2. the wheels, on the host: the locked requirements exported by uv (with their hashes) and
   downloaded for the image's Python and platform, plus the project's wheel, in `wheelhouse/`
   of the build context (`--build-arg WHEELS=context`: the image installs them offline);
3. `buildah bud` with chroot isolation and vfs storage in a temporary directory; the image is
   kept as an OCI archive, and its filesystem is extracted to `rootfs/`.

Running (`ImagePod`): the operator from `rootfs/`, as the image's user (uid 10001), the way a
kubelet runs the chart's pod: in its own mount and PID namespaces, the root a read-only bind,
/tmp a tmpfs (the chart's emptyDir), the ServiceAccount's token, CA and namespace at
/var/run/secrets/kubernetes.io/serviceaccount, KUBERNETES_SERVICE_HOST/PORT set. There is no
kubeconfig: the operator finds the cluster only through the in-cluster configuration.
Building and running need root (mmdebstrap, buildah, mount namespaces).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from .processes import Process

REPO = Path(__file__).resolve().parents[2]
IMAGE_USER = (10001, 10001)  # the Dockerfile's USER
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TAG = "localhost/lockstep/operator:test"
BASE_TAG = "localhost/lockstep-base:bookworm"

# The Debian base: what the Dockerfile needs from BASE (Python 3.11 with venv, CA certificates),
# without documentation, locales or Recommends; merged /usr without the usrmerge package (perl).
SUITE = "bookworm"
PYTHON_VERSION = "3.11"  # bookworm's python3; the wheels are downloaded for it
BASE_RECIPE = [
    "--variant=minbase",
    "--include=python3,python3-venv,ca-certificates",
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    "--aptopt=APT::Install-Recommends false",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    SUITE,
]
# What goes into the build context, and so into the cache key.
CONTEXT_FILES = ["Dockerfile", ".dockerignore", "pyproject.toml", "uv.lock", "README.md"]
CONTEXT_TREES = ["operator"]


def cache_root() -> Path:
    root = os.environ.get("LOCKSTEP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lockstep"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _log(message: str) -> None:
    print(f"[image] {message}", flush=True)


def _run(*argv: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        list(argv), cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=1800
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:3])} ... failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """One build at a time on this machine; a second caller waits, then finds the cache."""
    with (cache_root() / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def _source_files() -> list[Path]:
    files = [REPO / name for name in CONTEXT_FILES]
    for tree in CONTEXT_TREES:
        files += sorted(
            p for p in (REPO / tree).rglob("*") if p.is_file() and "__pycache__" not in p.parts
        )
    return files


def base_key() -> str:
    return _digest(json.dumps(BASE_RECIPE).encode())


def image_key() -> str:
    parts = [base_key().encode(), PYTHON_VERSION.encode(), platform.machine().encode()]
    for path in _source_files():
        parts += [str(path.relative_to(REPO)).encode(), path.read_bytes()]
    return _digest(*parts)


# ---------------------------------------------------------------------------- building


def debian_base() -> Path:
    """The root filesystem tarball of the Debian base (mmdebstrap, about two minutes once)."""
    tarball = cache_root() / f"debian-base-{SUITE}-{base_key()}.tar"
    with _locked("debian-base"):
        if not tarball.exists():
            _log(f"making the Debian {SUITE} base with mmdebstrap")
            partial = tarball.with_suffix(".partial.tar")
            _run("mmdebstrap", "--quiet", *BASE_RECIPE, str(partial))
            partial.rename(tarball)
    return tarball


def _platform_tags() -> list[str]:
    """pip download --platform for every manylinux glibc the base's (2.36) can load."""
    machine = platform.machine()
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(36, 16, -1)]
    return [*tags, f"manylinux2014_{machine}"]


def fill_wheelhouse(wheelhouse: Path) -> None:
    """The locked runtime requirements (with hashes) and every wheel they name, plus ours."""
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("PIP_FIND_LINKS", None)  # only the registry and the lock decide what goes in
    requirements = wheelhouse / "requirements.txt"
    _run(
        "python3", "-m", "uv", "export", "--frozen", "--no-dev", "--no-emit-project",
        "--quiet", "-o", str(requirements), cwd=REPO, env=env,
    )  # fmt: skip
    _run(
        "python3", "-m", "uv", "build", "--wheel", "--quiet", "--out-dir", str(wheelhouse),
        cwd=REPO, env=env,
    )  # fmt: skip
    platforms = [arg for tag in _platform_tags() for arg in ("--platform", tag)]
    _run(
        "python3", "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--require-hashes", "--only-binary=:all:",
        "--python-version", PYTHON_VERSION, "--implementation", "cp",
        "--abi", "cp" + PYTHON_VERSION.replace(".", ""), *platforms,
        "-r", str(requirements), "-d", str(wheelhouse),
        env=env,
    )  # fmt: skip


class ImageFacts(TypedDict):
    """What the build recorded: the image's config and its sizes."""

    tag: str
    user: str
    entrypoint: list[str]
    cmd: list[str]
    env: list[str]
    size_bytes: int  # the root filesystem, uncompressed
    compressed_bytes: int  # the OCI archive (gzip layers), what a registry stores
    base_size_bytes: int
    build_seconds: float


@dataclass(frozen=True)
class BuiltImage:
    """A built image in the cache: its filesystem, its OCI archive and what it measured."""

    directory: Path

    @property
    def rootfs(self) -> Path:
        return self.directory / "rootfs"

    @property
    def archive(self) -> Path:
        return self.directory / "lockstep-operator.oci.tar"

    @property
    def facts(self) -> ImageFacts:
        facts: ImageFacts = json.loads((self.directory / "image.json").read_text())
        return facts


def build_image() -> BuiltImage:
    """The image for the current sources, from the cache or built now."""
    image = BuiltImage(cache_root() / f"image-{image_key()}")
    if (image.directory / ".complete").exists():
        (image.directory / ".complete").touch()  # used now: not pruned
        return image
    base = debian_base()
    with _locked("image"):
        if (image.directory / ".complete").exists():
            return image
        partial = image.directory.with_name(image.directory.name + ".tmp")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        with tempfile.TemporaryDirectory(prefix="lockstep-image-") as scratch:
            _build(Path(scratch), base, BuiltImage(partial))
        (partial / ".complete").touch()
        shutil.rmtree(image.directory, ignore_errors=True)
        partial.rename(image.directory)
        _prune(keep=image.directory)
    return image


def _prune(keep: Path, unused_for: float = 2 * 86400) -> None:
    """Images of older sources (about 400 MB each) go once unused for two days; a checkout
    with other sources may still be using a younger one."""
    for directory in cache_root().glob("image-*"):
        marker = directory / ".complete"
        if directory == keep or not marker.exists():
            continue
        if time.time() - marker.stat().st_mtime > unused_for:
            shutil.rmtree(directory, ignore_errors=True)


def _build(scratch: Path, base: Path, out: BuiltImage) -> None:
    started = time.monotonic()
    storage = [
        f"--root={scratch / 'storage'}",
        f"--runroot={scratch / 'runroot'}",
        "--storage-driver=vfs",
    ]

    def buildah(*args: str) -> str:
        return _run("buildah", *storage, *args)

    base_context = scratch / "base"
    base_context.mkdir()
    os.link(base, base_context / "rootfs.tar")
    (base_context / "Containerfile").write_text('FROM scratch\nADD rootfs.tar /\nCMD ["bash"]\n')
    buildah("bud", "--quiet", "--isolation=chroot", "-t", BASE_TAG, str(base_context))

    context = scratch / "context"
    context.mkdir()
    for name in CONTEXT_FILES:
        shutil.copy2(REPO / name, context / name)
    for tree in CONTEXT_TREES:
        shutil.copytree(REPO / tree, context / tree, ignore=shutil.ignore_patterns("__pycache__"))
    _log("downloading the locked wheels on the host")
    fill_wheelhouse(context / "wheelhouse")
    _log("building the Dockerfile with buildah")
    buildah(
        "bud", "--quiet", "--isolation=chroot", "--pull=never",
        f"--build-arg=BASE={BASE_TAG}", "--build-arg=WHEELS=context",
        "-t", TAG, str(context),
    )  # fmt: skip
    config = json.loads(buildah("inspect", "--type=image", TAG))["OCIv1"]["config"]
    buildah("push", "--quiet", TAG, f"oci-archive:{out.archive}:{TAG}")

    container = buildah("from", "--pull=never", "--quiet", TAG).strip()
    mounted = Path(buildah("mount", container).strip())
    _run("cp", "-a", f"{mounted}/.", str(out.rootfs))
    buildah("rm", container)
    # The mount point a container runtime creates for the ServiceAccount volume.
    (out.rootfs / SERVICE_ACCOUNT_DIR.lstrip("/").replace("var/run", "run", 1)).mkdir(
        parents=True, exist_ok=True
    )
    facts: ImageFacts = {
        "tag": TAG,
        "user": config.get("User"),
        "entrypoint": config.get("Entrypoint"),
        "cmd": config.get("Cmd"),
        "env": config.get("Env"),
        "size_bytes": _tree_size(out.rootfs),
        "compressed_bytes": out.archive.stat().st_size,
        "base_size_bytes": base.stat().st_size,
        "build_seconds": round(time.monotonic() - started, 1),
    }
    (out.directory / "image.json").write_text(json.dumps(facts, indent=2) + "\n")
    _log(
        f"built in {facts['build_seconds']}s: {facts['size_bytes'] / 1e6:.0f} MB, "
        f"{facts['compressed_bytes'] / 1e6:.0f} MB compressed"
    )


def _tree_size(root: Path) -> int:
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                total += os.lstat(path).st_size
    return total


# ---------------------------------------------------------------------------- running


# Runs in fresh mount and PID namespaces (as root, before dropping to the image's user):
# $1 rootfs, $2 ServiceAccount directory, $3 user:group, then the command. The root is bound
# onto itself and remounted read-only first; what a container runtime mounts goes on top of it.
SANDBOX = r"""
set -eu
root=$1 account=$2 user=$3; shift 3
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount -t tmpfs -o nosuid,nodev,mode=755,size=1m tmpfs "$root/dev"
for device in null zero random urandom; do
  touch "$root/dev/$device"
  mount --bind "/dev/$device" "$root/dev/$device"
done
mount -t tmpfs -o nosuid,nodev,mode=1777,size=64m tmpfs "$root/tmp"
mount --bind "$account" "$root/run/secrets/kubernetes.io/serviceaccount"
mount -o remount,bind,ro "$root/run/secrets/kubernetes.io/serviceaccount"
exec setpriv --no-new-privs chroot --userspec="$user" "$root" "$@"
"""


def sandbox_argv(
    rootfs: Path, account_dir: Path, user: str, env: dict[str, str], command: list[str]
) -> list[str]:
    """The command line that runs `command` in the image's filesystem as `user`, with exactly
    the environment `env` (whose PATH also finds the host's mount, setpriv and chroot)."""
    return [
        "env", "-i", *(f"{key}={value}" for key, value in env.items()),
        "unshare", "--mount", "--pid", "--fork", "--propagation", "private", "--kill-child",
        "sh", "-c", SANDBOX, "sandbox", str(rootfs), str(account_dir), user, *command,
    ]  # fmt: skip


def image_env(image: BuiltImage, extra: dict[str, str]) -> dict[str, str]:
    """The environment of the image's config (ENV), plus what the kubelet adds."""
    env = dict(item.split("=", 1) for item in image.facts["env"])
    return {"HOSTNAME": "lockstep-0", **env, **extra}


@dataclass
class ServiceAccountVolume:
    """The projected ServiceAccount volume: token, ca.crt and namespace files."""

    directory: Path
    token: str
    ca_cert: Path
    namespace: str

    def write(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "token").write_text(self.token)
        shutil.copyfile(self.ca_cert, self.directory / "ca.crt")
        (self.directory / "namespace").write_text(self.namespace)
        for path in [self.directory, *self.directory.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        return self.directory


class ImagePod:
    """The image's entrypoint and command run like the chart's pod, against an API server on
    this machine (KUBERNETES_SERVICE_HOST/PORT point at it)."""

    def __init__(
        self,
        image: BuiltImage,
        account: ServiceAccountVolume,
        api_host: str,
        api_port: int,
        log_dir: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.image = image
        self.account = account
        self.api = (api_host, api_port)
        self.log_dir = log_dir
        self.env = env or {}
        self.process: Process | None = None

    def argv(self, args: list[str] | None = None, command: list[str] | None = None) -> list[str]:
        """`command` replaces the image's entrypoint and `args` its cmd, as in a pod spec."""
        facts = self.image.facts
        entrypoint = command if command is not None else facts["entrypoint"]
        cmd = args if args is not None else facts["cmd"]
        environment = image_env(
            self.image,
            {
                "KUBERNETES_SERVICE_HOST": self.api[0],
                "KUBERNETES_SERVICE_PORT": str(self.api[1]),
                **self.env,
            },
        )
        return sandbox_argv(
            self.image.rootfs,
            self.account.write(),
            facts["user"],
            environment,
            [*entrypoint, *cmd],
        )

    def start(self, args: list[str], name: str = "operator-from-image") -> Process:
        self.process = Process(name, self.argv(args), self.log_dir)
        return self.process

    def run(
        self, args: list[str], command: list[str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a one-off container in the pod's sandbox (a fresh one, like a restart)."""
        return subprocess.run(
            self.argv(args, command), capture_output=True, text=True, timeout=timeout, check=False
        )

    def container_pid(self) -> int:
        """The PID (on this machine) of the started container's main process."""
        assert self.process is not None
        sandbox = self.process.popen.pid  # env execs unshare, which forks the container
        children = Path(f"/proc/{sandbox}/task/{sandbox}/children").read_text().split()
        if len(children) != 1:
            raise RuntimeError(f"the sandbox has {len(children)} children, not one")
        return int(children[0])

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=30)
            self.process = None


def main() -> int:
    image = build_image()
    print(json.dumps({"directory": str(image.directory), **image.facts}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
