"""The jail's command line: what a task sees, what it may use (no jail is started here)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from services.compute import isolation
from services.compute.isolation import Jail, Limits, Mount


def _jail(**overrides) -> Jail:
    options = {"mounts": [Mount(Path("/srv/in"), "/tessera/in")], "limits": Limits(), "uid": 200001}
    return Jail(**{**options, **overrides})


def test_a_task_has_no_network_and_a_build_may_have_it():
    assert "--unshare-net" in isolation.argv(_jail(), ["true"])
    assert "--unshare-net" not in isolation.argv(_jail(network=True), ["true"])


def test_the_service_environment_never_reaches_the_jail(monkeypatch):
    monkeypatch.setenv("TESSERA_ORG_SECRET_FILE", "/secret/org.secret")
    monkeypatch.setenv("PIP_INDEX_URL", "https://index.example/simple")
    task = isolation.argv(_jail(), ["true"])
    assert "--clearenv" in task
    assert not any("TESSERA" in arg or "/secret/" in arg for arg in task)
    assert "PIP_INDEX_URL" not in task
    assert "PIP_INDEX_URL" in isolation.argv(_jail(network=True), ["true"])  # builds reach the index


def test_mounts_are_read_only_unless_writable_and_land_after_the_private_tmp():
    jail = _jail(mounts=[Mount(Path("/srv/in"), "/tmp/clone/in"), Mount(Path("/srv/out"), "/tessera/out", True)])
    args = isolation.argv(jail, ["true"])
    tmpfs = args.index("/tmp", args.index("--tmpfs") - 3)
    read_only = args.index("--ro-bind", tmpfs)
    assert args[read_only + 1 : read_only + 3] == ["/srv/in", "/tmp/clone/in"]
    writable = args.index("--bind")
    assert args[writable + 1 : writable + 3] == ["/srv/out", "/tessera/out"]
    # Folders a mount needs are made traversable (bwrap's default would be 0700 for the jail's uid).
    assert args[args.index("/tmp/clone") - 2 : args.index("/tmp/clone")] == ["0755", "--dir"]


def test_privileges_are_dropped_by_the_runner_or_by_a_user_namespace(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    as_root = isolation.argv(_jail(), ["true"])
    assert "CAP_SETUID" in as_root and "--unshare-user" not in as_root
    monkeypatch.setattr(os, "geteuid", lambda: 10001)
    as_user = isolation.argv(_jail(), ["true"])
    assert "--unshare-user" in as_user and "--disable-userns" in as_user and "--cap-add" not in as_user


@pytest.mark.parametrize("name", ["memory_bytes", "cpu_seconds", "processes", "open_files", "file_bytes", "tmp_bytes"])
def test_no_limit_can_be_switched_off(name):
    with pytest.raises(ValueError, match=name):
        Limits(**{name: 0})


@pytest.mark.parametrize("nice", [0, -5, 20])
def test_a_jail_cannot_be_given_priority_over_the_services(nice):
    with pytest.raises(ValueError, match="niceness"):
        Limits(nice=nice)


def test_a_jail_s_niceness_only_goes_up_from_the_service_s():
    def niceness_after(limits: Limits, start: int) -> int:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # what runs between fork and exec of bwrap
            try:
                os.setpriority(os.PRIO_PROCESS, 0, start)
                limits.apply()
                os.write(write, str(os.getpriority(os.PRIO_PROCESS, 0)).encode())
            finally:
                os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        with os.fdopen(read) as answer:
            return int(answer.read())

    roomy = dict(memory_bytes=1 << 40, cpu_seconds=600, processes=4096, open_files=1024, file_bytes=1 << 40)
    assert niceness_after(Limits(**roomy, nice=10), 0) == 10
    assert niceness_after(Limits(**roomy, nice=10), 15) == 15  # a service already nicer keeps its jails as nice


def test_the_interpreter_is_visible_but_not_the_repository():
    targets = {m.target for m in isolation.runtime_mounts()}
    assert sys.prefix in targets or sys.prefix.startswith("/usr")
    repository = Path(isolation.__file__).resolve().parents[2]
    # Neither the repository nor a folder holding it (a virtualenv inside it is only itself).
    assert not any(repository.is_relative_to(target) for target in targets)
    assert all(m.writable is False for m in isolation.runtime_mounts())


def test_uids_are_handed_out_once_each(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    pool = isolation.UidPool(300000, 2)
    first, second = pool.acquire(), pool.acquire()
    assert {first, second} == {300000, 300001}
    with pytest.raises(isolation.SandboxUnavailable):
        pool.acquire()
    pool.release(first)
    assert pool.acquire() == first
