"""A partner's function as a hostile partner would write it: each registered function tries one
attack from inside its task and writes what it managed into its output model (a JSON report), so
that the tests can assert, from outside, that every attempt was contained.

``targets.json`` (written into the archive by the test) names what to go after: the organization's
secret files, its caches, every service address, the database's files and port.
"""

HOSTILE = r'''
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import substratools as tools

TARGETS = json.loads((Path(__file__).parent / "targets.json").read_text())
DEPTH = 1500  # deeper than Python's recursion in shutil.rmtree and os.fwalk


def nest(base, depth=DEPTH):
    """``depth`` folders one in the other under ``base``, made by descriptor (their path exceeds PATH_MAX)."""
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)


if sys.argv[1:] == ["--nest-here"]:  # a build step's attack: RUN python3 function.py --nest-here
    nest(".")
    sys.exit(0)


def _forge_answers(line):
    """From the script's top level, which runs in the warm runner itself (a task runs in a child forked
    from it): write ``line`` on every pipe open for writing but stdout and stderr, the runner's answer
    pipe among them."""
    import fcntl

    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            writable = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY
            if fd > 2 and writable and os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:"):
                os.write(fd, line)
        except OSError:
            pass


if "forge_nested" in sys.argv:
    _forge_answers(b"[" * 200_000 + b"\n")  # valid JSON's beginning, nested past any parser's recursion
elif "forge_long" in sys.argv:
    _forge_answers(b"x" * (2 << 20))  # longer than any answer line is read


def _report(outputs, data):
    with open(outputs["model"], "w") as out:
        json.dump(data, out)


def _error(call):
    try:
        call()
        return "OK"
    except BaseException as exc:
        return type(exc).__name__


def _read(path):
    with open(path, "rb") as f:
        f.read(16)


def _task_arguments():
    """The task's own input and output paths, from the substratools arguments file."""
    arguments = next(a[1:] for a in sys.argv if a.startswith("@"))
    lines = Path(arguments).read_text().splitlines()
    return json.loads(lines[lines.index("--inputs") + 1]), json.loads(lines[lines.index("--outputs") + 1])


@tools.register
def snoop(inputs, outputs, task_properties):
    files = {path: _error(lambda p=path: _read(p)) for path in TARGETS["files"]}
    listing = {}
    for folder in ["/", "/tessera", "/tessera/in", "/tessera/out", "/etc", TARGETS["state_dir"], TARGETS["work_dir"]]:
        try:
            listing[folder] = sorted(os.listdir(folder))
        except BaseException as exc:
            listing[folder] = type(exc).__name__
    _report(outputs, {
        "files": files,
        "listing": listing,
        "environment": sorted(os.environ),
        "uid": os.getuid(),
        "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "host_init": _error(lambda: _read("/proc/1/environ")),
    })


@tools.register
def connect(inputs, outputs, task_properties):
    result = {}
    for address in TARGETS["addresses"]:
        host, port = address.rsplit(":", 1)
        result[address] = _error(lambda: socket.create_connection((host, int(port)), timeout=2).close())
    result["unix:postgres"] = _error(
        lambda: socket.socket(socket.AF_UNIX).connect(TARGETS["postgres_socket"])
    )
    _report(outputs, result)


@tools.register
def tamper(inputs, outputs, task_properties):
    task_inputs, _ = _task_arguments()
    result = {}
    for entry in task_inputs:
        path = Path(entry["value"])
        target = path / "data.csv" if path.is_dir() else path
        result[f"append:{entry['id']}"] = _error(lambda t=target: open(t, "a").write("\n# injected\n"))
        result[f"chmod:{entry['id']}"] = _error(lambda t=target: os.chmod(t, 0o777))
        result[f"unlink:{entry['id']}"] = _error(lambda t=target: os.unlink(t))
    site = next(p for p in sys.path if p.endswith("site-packages"))
    result["site-packages"] = _error(lambda: open(os.path.join(site, "injected.pth"), "w").write("import os\n"))
    result["interpreter"] = _error(lambda: open(sys.executable, "ab"))
    result["runner"] = _error(lambda: open("/tessera/runner.py", "a").write("# injected\n"))
    result["usr"] = _error(lambda: open("/usr/injected", "w"))
    _report(outputs, result)


@tools.register
def linger(inputs, outputs, task_properties):
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)  # " + TARGETS["marker"]
    child = os.fork()
    if child == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", code])
        os._exit(0)
    os.waitpid(child, 0)
    time.sleep(0.5)
    _report(outputs, {"spawned": True})


@tools.register
def hog_memory(inputs, outputs, task_properties):
    blob = bytearray(3 * 1024**3)
    _report(outputs, {"allocated": len(blob)})


@tools.register
def fork_bomb(inputs, outputs, task_properties):
    children, failure = [], None
    for _ in range(100):
        try:
            pid = os.fork()
        except OSError as exc:
            failure = exc.errno
            break
        if pid == 0:
            time.sleep(5)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    _report(outputs, {"forked": len(children), "errno": failure})


@tools.register
def spin(inputs, outputs, task_properties):
    while True:
        pass


@tools.register
def hang(inputs, outputs, task_properties):
    print("waiting forever", flush=True)
    time.sleep(600)


@tools.register
def fill(inputs, outputs, task_properties):
    def fill_tmp():
        with open("/tmp/filler", "wb") as out:
            for _ in range(64):
                out.write(b"x" * (1 << 20))
                out.flush()

    def big_output():
        with open(Path(outputs["model"]).with_name("big"), "wb") as out:
            for _ in range(64):
                out.write(b"x" * (1 << 20))
                out.flush()

    _report(outputs, {"tmp": _error(fill_tmp), "big_file": _error(big_output)})


@tools.register
def escape(inputs, outputs, task_properties):
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def unshare(flag):
        if libc.unshare(flag) != 0:
            raise OSError(ctypes.get_errno(), "unshare")

    result = {
        "user namespace": _error(lambda: unshare(0x10000000)),
        "mount namespace": _error(lambda: unshare(0x00020000)),
        "network namespace": _error(lambda: unshare(0x40000000)),
        "setuid root": _error(lambda: os.setuid(0)),
        "signal init": _error(lambda: os.kill(1, signal.SIGKILL)),
        "sysrq": _error(lambda: open("/proc/sysrq-trigger", "w").write("h")),
        "kernel log": _error(lambda: _read("/dev/kmsg")),
        "priority": _error(lambda: os.setpriority(os.PRIO_PROCESS, 0, 0)),
    }
    with open("/proc/self/status") as status:
        capabilities = [line.split()[1] for line in status if line.startswith(("CapEff", "CapPrm"))]
    _report(outputs, {"attempts": result, "capabilities": capabilities,
                      "uid_map": Path("/proc/self/uid_map").read_text().split(),
                      "niceness": os.getpriority(os.PRIO_PROCESS, 0)})


@tools.register
def probe_environment(inputs, outputs, task_properties):
    # What the .pth file of a package of this function's environment saw when the interpreter started.
    _report(outputs, {"pth": os.environ.get("TESSERA_PROBE", "never ran")})


@tools.register
def deep_tree(inputs, outputs, task_properties):
    # Trees too deep for a recursive delete: in the runner's work folder (kept until the runner
    # stops) and beside the task's output.
    for base in (os.getcwd(), os.path.dirname(outputs["model"])):
        nest(base)
    _report(outputs, {"depth": DEPTH})


@tools.register
def forge_nested(inputs, outputs, task_properties):
    _report(outputs, {"forged": False})  # reached only if the forged answer went unnoticed


@tools.register
def forge_long(inputs, outputs, task_properties):
    _report(outputs, {"forged": False})


@tools.register
def link_out(inputs, outputs, task_properties):
    # A link to a file that exists in the jail and on the host: compute's own environment, if followed.
    os.symlink("/proc/self/environ", outputs["model"])


tools.execute()
'''


def probe_wheel() -> tuple[str, bytes]:
    """A wheel whose .pth file runs at every interpreter start and records who it ran as."""
    import base64
    import hashlib
    import io
    import zipfile

    name = "tessera_probe-0.1-py3-none-any.whl"
    files = {
        "tessera_probe.pth": (
            "import os; os.environ['TESSERA_PROBE'] = str(os.geteuid()) + ' ' + "
            "[l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0]\n"
        ),
        "tessera_probe-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: tessera-probe\nVersion: 0.1\n",
        "tessera_probe-0.1.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: tessera-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append("tessera_probe-0.1.dist-info/RECORD,,")
    files["tessera_probe-0.1.dist-info/RECORD"] = "\n".join(record) + "\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)
    return name, buffer.getvalue()
