"""Build the Kubernetes test binaries from the Go module proxy into a cache folder keyed by their versions.

kube-apiserver, kube-scheduler, kube-controller-manager and etcd are ``tool`` dependencies of the Go module
beside this file (its go.mod/go.sum pin every version); kwok and helm are ``go install``-ed at fixed versions.
The result lands in ``${TESSERA_CACHE:-~/.cache/tessera}/k8s/<key>/bin`` (plus kwok's upstream stage files in
``<key>/stages``). The folder is built under a temporary name and renamed when complete, so a folder that
exists is whole, and nothing is rebuilt while it exists. Standard library only: it runs before the tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tools import versioned_cache
from tools.versioned_cache import build_once, missing_tools

KUBERNETES = "v1.36.3"
ETCD = "v3.6.8"
KWOK = "v0.8.0"
HELM = "v3.21.4"

MODULE = Path(__file__).resolve().parent
BINARIES = ("etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager", "kwok", "helm")
# Upstream kwok stages we run (paths inside the kwok module); ours are in tessera-stages.yaml.
KWOK_STAGES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)


def _kube_ldflags() -> str:
    """The version stamps Kubernetes' own build puts in (hack/lib/version.sh); without them the server says v0.0.0."""
    major, minor = KUBERNETES.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {package}.gitVersion={KUBERNETES}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
        ]
    return " ".join(flags)


# (binary, how to build it): a package of the module for `go build`, or `pkg@version` for `go install`.
RECIPE = (
    ("kube-apiserver", "build", "k8s.io/kubernetes/cmd/kube-apiserver", _kube_ldflags()),
    ("kube-scheduler", "build", "k8s.io/kubernetes/cmd/kube-scheduler", _kube_ldflags()),
    ("kube-controller-manager", "build", "k8s.io/kubernetes/cmd/kube-controller-manager", _kube_ldflags()),
    ("etcd", "build", "go.etcd.io/etcd/server/v3", "-s -w"),
    ("kwok", "install", f"sigs.k8s.io/kwok/cmd/kwok@{KWOK}", "-s -w"),
    (
        "helm",
        "install",
        f"helm.sh/helm/v3/cmd/helm@{HELM}",
        f"-s -w -X helm.sh/helm/v3/internal/version.version={HELM}",
    ),
)


def cache_root() -> Path:
    """``$TESSERA_CACHE/k8s``, by default ``~/.cache/tessera/k8s``."""
    return versioned_cache.cache_root("k8s")


def cache_key() -> str:
    """The versions, readable, plus a digest of the module's pins and the build recipe."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update((MODULE / name).read_bytes())
    digest.update(json.dumps([RECIPE, KWOK_STAGES]).encode())
    return f"k8s-{KUBERNETES}-etcd-{ETCD}-kwok-{KWOK}-helm-{HELM}-{digest.hexdigest()[:10]}"


def home() -> Path:
    """The cache folder of this key (it holds ``bin/`` and ``stages/``)."""
    return cache_root() / cache_key()


def installed() -> Path | None:
    """``bin/`` of the cache folder when every binary is there, else None."""
    bin_dir = home() / "bin"
    return bin_dir if all(os.access(bin_dir / name, os.X_OK) for name in BINARIES) else None


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CGO_ENABLED="0",
        GOTOOLCHAIN="local",  # never fetch another toolchain: fail instead
        GOWORK="off",
        GOFLAGS="-buildvcs=false",  # the module lives in our git tree; its state is no part of the binaries
    )
    return env


def _run(command: list[str], *, cwd: Path, env: dict[str, str]) -> None:
    result = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-4000:]}")


def _build_into(target: Path, go: str, say: Callable[[str], None]) -> None:
    bin_dir = target / "bin"
    bin_dir.mkdir(parents=True)
    env = _go_env()
    nice = ["nice", "-n", "19"] if shutil.which("nice") else []
    for name, how, what, ldflags in RECIPE:
        started = time.monotonic()
        if how == "build":
            command = [*nice, go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(bin_dir / name), what]
            _run(command, cwd=MODULE, env=env)
        else:  # outside our module, as `go install pkg@version` wants
            command = [*nice, go, "install", "-trimpath", "-ldflags", ldflags, what]
            _run(command, cwd=target, env={**env, "GOBIN": str(bin_dir)})
        say(f"  {name:<24} {time.monotonic() - started:6.1f} s")
    # kwok standalone needs its stages given; the upstream ones come from the module we just installed.
    listing = subprocess.run(
        [go, "mod", "download", "-json", f"sigs.k8s.io/kwok@{KWOK}"],
        cwd=target,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    kwok_dir = Path(json.loads(listing.stdout)["Dir"])
    (target / "stages").mkdir()
    for stage in KWOK_STAGES:
        shutil.copyfile(kwok_dir / stage, target / "stages" / Path(stage).name)


def _say(message: str) -> None:
    print(message, flush=True)


def build(say: Callable[[str], None] = _say) -> Path:
    """Build the binaries unless the cache folder is complete; returns its ``bin/``. Needs ``go``."""
    if (done := installed()) is not None:
        return done
    go = shutil.which("go")
    if go is None:
        raise FileNotFoundError("go is not on PATH")

    def fill(work: Path) -> None:
        say(f"k8s: building the Kubernetes test binaries into {home()} (about 10 min on 2 cores with cold Go caches)")
        started = time.monotonic()
        _build_into(work, go, say)
        toolchain = subprocess.check_output([go, "env", "GOVERSION"], text=True).strip()
        info = {"key": home().name, "go": toolchain, "seconds": round(time.monotonic() - started)}
        (work / "build-info.json").write_text(json.dumps(info) + "\n")
        say(f"k8s: built in {time.monotonic() - started:.0f} s")

    return build_once(home(), lambda: installed() is not None, fill) / "bin"


def main() -> int:
    """``python -m tools.k8s build``: exit 0 when the binaries are there (or go is missing outside CI)."""
    if (done := installed()) is not None:
        print(f"k8s: binaries present in {done}")
        return 0
    if (status := missing_tools("k8s", ("go",), "Kubernetes test binaries", "k8s tests")) is not None:
        return status
    try:
        build()
    except (RuntimeError, subprocess.CalledProcessError) as error:
        print(f"k8s: build failed: {error}", file=sys.stderr)
        return 1
    return 0
