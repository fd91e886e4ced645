"""Install the client generators and grpcurl into a cache folder keyed by their versions, and generate the clients.

``protoc-gen-go``, ``protoc-gen-go-grpc`` and ``grpcurl`` are ``go install``-ed at the versions below into
``${TESSERA_CACHE:-~/.cache/tessera}/clients/<key>/bin``; the TypeScript toolchain (protoc-gen-es, tsc and the
runtime packages) is ``npm ci``-ed from ``clients/ts/package-lock.json`` into ``<key>/node_modules``, which
``clients/ts/node_modules`` links to. The key names the versions and digests the lock files, so a folder that exists
is whole and is never rebuilt (the same scheme as tools/k8s, ADR 0009). Standard library only.
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

from tools.versioned_cache import build_once, cache_root, missing_tools

PROTOC_GEN_GO = "v1.36.12"
PROTOC_GEN_GO_GRPC = "v1.6.2"
GRPCURL = "v1.9.4"
GO_TOOLS = (
    f"google.golang.org/protobuf/cmd/protoc-gen-go@{PROTOC_GEN_GO}",
    f"google.golang.org/grpc/cmd/protoc-gen-go-grpc@{PROTOC_GEN_GO_GRPC}",
    f"github.com/fullstorydev/grpcurl/cmd/grpcurl@{GRPCURL}",
)
BINARIES = ("protoc-gen-go", "protoc-gen-go-grpc", "grpcurl")

ROOT = Path(__file__).resolve().parents[2]
GO_CLIENT = ROOT / "clients" / "go"
TS_CLIENT = ROOT / "clients" / "ts"
BUF = ROOT / ".venv" / "bin" / "buf"


def cache_key() -> str:
    """The Go tools' versions, readable, plus a digest of the npm lock file, the Go module's sums and the recipe."""
    digest = hashlib.sha256()
    for path in (TS_CLIENT / "package-lock.json", GO_CLIENT / "go.sum"):
        digest.update(path.read_bytes())
    digest.update(json.dumps(GO_TOOLS).encode())
    return f"go-{PROTOC_GEN_GO}-grpc-{PROTOC_GEN_GO_GRPC}-grpcurl-{GRPCURL}-{digest.hexdigest()[:10]}"


def home() -> Path:
    """The cache folder of this key (``bin/`` and ``node_modules/``)."""
    return cache_root("clients") / cache_key()


def installed() -> Path | None:
    """The cache folder when every tool is there, else None."""
    folder = home()
    complete = all(os.access(folder / "bin" / name, os.X_OK) for name in BINARIES)
    return folder if complete and (folder / "node_modules" / ".bin" / "tsc").exists() else None


def go_env() -> dict[str, str]:
    """The environment of every go command here: no toolchain download, no VCS stamping, no workspace."""
    return {**os.environ, "GOTOOLCHAIN": "local", "GOWORK": "off", "GOFLAGS": "-buildvcs=false", "CGO_ENABLED": "0"}


def _run(command: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-4000:]}")


def _build_into(target: Path, go: str, npm: str, say: Callable[[str], None]) -> None:
    nice = ["nice", "-n", "19"] if shutil.which("nice") else []
    (target / "bin").mkdir()
    for tool in GO_TOOLS:
        started = time.monotonic()
        _run([*nice, go, "install", "-trimpath", "-ldflags", "-s -w", tool], cwd=target,
             env={**go_env(), "GOBIN": str(target / "bin")})  # fmt: skip
        say(f"  {tool:<62} {time.monotonic() - started:6.1f} s")
    started = time.monotonic()
    # The Go client's own dependencies land in the machine's module cache (GOMODCACHE), checked against go.sum.
    _run([go, "mod", "download"], cwd=GO_CLIENT, env=go_env())
    say(f"  {'go mod download (clients/go)':<62} {time.monotonic() - started:6.1f} s")
    started = time.monotonic()
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(TS_CLIENT / name, target / name)
    _run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=target)
    say(f"  {'npm ci (clients/ts)':<62} {time.monotonic() - started:6.1f} s")


def build(say: Callable[[str], None] = print) -> Path:
    """Install the tools unless the cache folder is complete; returns it. Needs ``go`` and ``npm``."""
    if (done := installed()) is not None:
        return done
    go, npm = shutil.which("go"), shutil.which("npm")
    if go is None or npm is None:
        raise FileNotFoundError("the clients need go and npm on PATH")

    def fill(work: Path) -> None:
        say(f"clients: installing the client tools into {home()}")
        started = time.monotonic()
        _build_into(work, go, npm, say)
        say(f"clients: installed in {time.monotonic() - started:.0f} s")

    return build_once(home(), lambda: installed() is not None, fill)


def tool_path(folder: Path) -> str:
    """PATH with the cached Go tools and the npm binaries first."""
    return os.pathsep.join([str(folder / "bin"), str(folder / "node_modules" / ".bin"), os.environ.get("PATH", "")])


def link_node_modules(folder: Path) -> None:
    """Point ``clients/ts/node_modules`` at the cached one (a real folder there is left alone)."""
    link = TS_CLIENT / "node_modules"
    if link.is_symlink() and link.resolve() != (folder / "node_modules").resolve():
        link.unlink()
    if not link.exists() and not link.is_symlink():
        link.symlink_to(folder / "node_modules")


def generate(folder: Path) -> None:
    """``buf generate`` (buf.gen.yaml) then compile both clients and their examples: a proto change that breaks
    the generated code or what uses it fails here."""
    link_node_modules(folder)
    env = {**go_env(), "PATH": tool_path(folder)}
    _run([str(BUF), "generate"], cwd=ROOT, env=env)
    _run(["go", "build", "./..."], cwd=GO_CLIENT, env=env)
    _run(["go", "vet", "./..."], cwd=GO_CLIENT, env=env)
    unformatted = subprocess.run(["gofmt", "-l", "tessera", "examples"], cwd=GO_CLIENT, env=env,
                                 capture_output=True, text=True, check=True).stdout  # fmt: skip
    if unformatted:
        raise RuntimeError(f"gofmt would change these files of clients/go:\n{unformatted}")
    _run(["tsc", "-p", "."], cwd=TS_CLIENT, env=env)


def main(argv: list[str]) -> int:
    """``python -m tools.clients build|gen``: exit 0 when the tools are there (or go/npm is missing outside CI)."""
    verb = argv[0] if argv else "build"
    if verb not in ("build", "gen", "path"):
        print("usage: python -m tools.clients build|gen|path", file=sys.stderr)
        return 2
    if verb == "path":
        found = installed()
        print(found if found else f"not installed: {home()}")
        return 0 if found else 1
    missing = None if installed() else missing_tools("clients", ("go", "npm"), "client tools", "client tests")
    if missing is not None:
        return missing
    try:
        folder = build()
        if verb == "gen":
            generate(folder)
            print(f"clients: generated and compiled clients/go and clients/ts with the tools of {folder}")
        else:
            print(f"clients: tools present in {folder}")
    except (RuntimeError, subprocess.CalledProcessError) as error:
        print(f"clients: {error}", file=sys.stderr)
        return 1
    return 0
