"""The task runner: the first process of every jail (standard library only; it runs inside).

``runner.py exec --uid U [--env JSON] -- COMMAND...``
    The jail's first process, started by the service's own interpreter with ``-I -S`` (no
    environment, no site-packages: nothing of the function's environment, not even a ``.pth`` file,
    runs before it). As root (compute runs as root), it switches to the unprivileged ``U``, enters a
    user namespace of its own that may hold no other, drops every capability, then replaces itself
    with COMMAND: a build step, or the serving runner below, now on the function's interpreter, its
    environment completed by ``JSON`` (the function's Dockerfile ``ENV``) only then.

``runner.py serve --results FD -- ENTRYPOINT...``
    A warm runner for one (compute plan, function), never as root: it reads one JSON command per
    line on stdin, ``{"task": KEY, "args": [...], "log": PATH}``, runs the task with
    ``ENTRYPOINT + args``, its output going to PATH, and answers one JSON line on the results pipe:
    ``{"task": KEY, "ok": BOOL, "error": TEXT, "retire": BOOL}``. End of input stops it.

    When the entrypoint is ``python SCRIPT ...`` the script is loaded once: the runner replaces
    ``substratools.execute`` with a loop that runs each task in a child forked from the loaded
    runner, so the interpreter, substratools and the function's module are loaded once per plan and
    function, and each task starts from that state (substratools' parser too, built once). Any other
    entrypoint is started once per task, inside the same jail.

    The first command may instead be ``{"task": "", "load": true}`` (a runner prepared before its plan's
    first task of the function): the script's top level runs under the name ``__tessera_load__`` (its
    imports made, its ``__main__`` part skipped) and the answer is ``{"task": "", "ok": ...}``. Other
    entrypoints have nothing to load and answer ok.
"""

from __future__ import annotations

import json
import os
import sys

CLONE_NEWUSER = 0x10000000
PR_SET_DUMPABLE = 4
CAPSET = {"x86_64": 126, "aarch64": 91}  # capset(2): glibc does not export it
CAPABILITY_VERSION_3 = 0x20080522


def _capabilities(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1], 16)
    return -1


def switch_uid(uid: int) -> None:
    """Become ``uid`` with no group and no capability left, alone in a user namespace of its own that
    may hold no other (a no-op when not root: bwrap made that namespace already)."""
    if os.getuid() != 0 and os.geteuid() != 0:
        return
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise SystemExit("runner: could not switch uid")
    _own_user_namespace(uid)
    if _capabilities("CapEff") != 0 or _capabilities("CapPrm") != 0:
        raise SystemExit("runner: capabilities remain after the uid switch")


def _own_user_namespace(uid: int) -> None:
    """Enter a new user namespace mapping ``uid`` to itself, forbid any namespace below it, then drop
    the capabilities that entering it gave (they hold only inside it, but a task needs none)."""
    import ctypes
    import platform

    libc = ctypes.CDLL(None, use_errno=True)
    # The uid switch made the process undumpable, which gives its /proc files to root: writing its
    # own maps needs them to be its own again (no other process of this uid exists outside the jail).
    libc.prctl(PR_SET_DUMPABLE, 1)
    if libc.unshare(CLONE_NEWUSER) != 0:
        raise SystemExit(f"runner: unshare(CLONE_NEWUSER) failed: {os.strerror(ctypes.get_errno())}")
    for name, text in (("uid_map", f"{uid} {uid} 1\n"), ("setgroups", "deny"), ("gid_map", f"{uid} {uid} 1\n")):
        with open(f"/proc/self/{name}", "w") as out:
            out.write(text)
    with open("/proc/sys/user/max_user_namespaces", "w") as out:
        out.write("0")
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: all empty, both 32-bit halves
    if libc.syscall(CAPSET[platform.machine()], header, data) != 0:
        raise SystemExit(f"runner: capset failed: {os.strerror(ctypes.get_errno())}")


def _arguments(argv: list[str]) -> tuple[str, dict[str, str], list[str]]:
    mode, rest = argv[0], argv[1:]
    options = {}
    while rest and rest[0] != "--":
        options[rest[0].lstrip("-")] = rest[1]
        rest = rest[2:]
    return mode, options, rest[1:]


LOADING = "__tessera_load__"
"""The module name a script's top level runs under when its runner loads it before its first task."""

SIGNAL_HINTS = {
    "SIGXCPU": " (it used up its CPU time limit)",
    "SIGKILL": " (a limit of the sandbox)",
    "SIGSEGV": " (a crash in native code, or its memory limit)",
}


class Serve:
    """The command loop of a warm runner.

    The runner loads the function once and runs each task in a child forked from it: the task starts
    from the loaded state, not from what the previous task left, gets CPU time of its own (rlimits
    count per process), and nothing it starts (threads, children) outlives it: the child exits and
    compute kills whatever else remains in the jail. Only code run while loading (the script's top
    level) lives in the runner itself.
    """

    def __init__(self, results_fd: int, entrypoint: list[str]) -> None:
        self.results = os.fdopen(results_fd, "w", buffering=1)
        self.entrypoint = entrypoint
        self.commands = sys.stdin
        self.current: dict | None = None

    def next_command(self) -> dict | None:
        line = self.commands.readline()
        if not line.strip():
            return None
        return json.loads(line)

    def answer(self, ok: bool, error: str = "", retire: bool = False) -> bool:
        """Report the current task; True when the runner must stop after it."""
        sys.stdout.flush()
        sys.stderr.flush()
        self.results.write(json.dumps({"task": self.current["task"], "ok": ok, "error": error, "retire": retire}))
        self.results.write("\n")
        self.results.flush()
        return retire

    def redirect_output(self) -> None:
        """The current task's log becomes stdout and stderr (an existing link is refused)."""
        sys.stdout.flush()
        sys.stderr.flush()
        fd = os.open(self.current["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)

    def outcome(self, call) -> tuple[bool, str]:
        """Run ``call`` here, its output in the current task's log: (succeeded, error)."""
        import logging
        import traceback

        if self.current.get("log"):  # a load command has none: its output stays in the runner's log
            self.redirect_output()
        logging.getLogger("substratools").handlers.clear()  # substratools adds one per execute
        try:
            call()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) or exc.code is None else 1
            return (False, f"exited with status {code}") if code else (True, "")
        except BaseException as exc:  # noqa: BLE001 - the user's failure, reported as the task's
            traceback.print_exc()
            return False, f"{type(exc).__name__}: {exc}"
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        return True, ""

    def in_child(self, call) -> tuple[bool, str]:
        """Run ``call`` as the current task in a forked child: (succeeded, error)."""
        import gc
        import signal

        # The loaded objects move to a generation the collector never visits: a child's collections then
        # do not touch (and copy) every page the runner shares with it.
        gc.freeze()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            self.results.close()  # the answer is the runner's to give, never the task's
            ok, error = False, "the task did not report"
            try:
                ok, error = self.outcome(call)
                os.write(write_fd, error.encode(errors="replace")[:4000])
            finally:
                os._exit(0 if ok else 1)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as reader:
            error = reader.read(4000).decode(errors="replace")
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            name = signal.Signals(os.WTERMSIG(status)).name
            return False, f"the task's process was killed by {name}{SIGNAL_HINTS.get(name, '')}"
        if os.WEXITSTATUS(status) != 0:
            return False, error or f"exited with status {os.WEXITSTATUS(status)}"
        return True, ""

    def loop(self) -> None:
        self.current = self.next_command()
        if self.current is None:
            return
        program = self.entrypoint
        if len(program) >= 2 and os.path.basename(program[0]).startswith("python") and program[1].endswith(".py"):
            self.in_process(program[1], program[2:])
        else:
            self.per_process(program)

    def per_process(self, program: list[str]) -> None:
        import subprocess

        if os.path.basename(program[0]).startswith("python"):
            program = [sys.executable, "-u", *program[1:]]  # the environment's interpreter, as the build chose

        def call():
            code = subprocess.call([*program, *self.current["args"]], stdin=subprocess.DEVNULL)
            if code:
                raise SystemExit(code)

        while self.current is not None:
            self.answer(*((True, "") if self.current.get("load") else self.outcome(call)))
            self.current = self.next_command()

    def in_process(self, script: str, fixed: list[str]) -> None:
        import runpy

        script = os.path.abspath(script)
        sys.path.insert(0, os.path.dirname(script))
        state = {"looping": False}
        try:
            import substratools
            from substratools import function as functions
        except ImportError:
            substratools = None

        if substratools is not None:
            original = functions.execute

            def looping_execute(sysargs=None):
                """Run the current task, then every next one, each in a child, inside the script's own
                call: the script's module stays loaded in the runner."""
                state["looping"] = True
                prepare(functions)
                while True:
                    if self.current.get("load"):  # the script called execute as it loaded: it is loaded
                        self.answer(True)
                    else:
                        args = [*fixed, *self.current["args"]]
                        sys.argv = [script, *args]  # the task's own command line, as a fresh process has it
                        self.answer(*self.in_child(lambda args=args: original(sysargs=args)))
                    self.current = self.next_command()
                    if self.current is None:
                        raise SystemExit(0)

            functions.execute = looping_execute
            substratools.execute = looping_execute

        if self.current.get("load"):
            # Loaded ahead of its first task: the module's top level runs under another name than __main__,
            # so its imports are made and its functions defined, but its ``if __name__ == "__main__"`` part is
            # skipped; the first task then starts substratools' execute loop on the loaded module (a script
            # without substratools functions is run again as __main__, as without a load).
            sys.argv = [script, *fixed]
            ok, error = self.outcome(lambda: runpy.run_path(script, run_name=LOADING))
            if state["looping"]:
                return  # it called execute while loading: that loop served every task and ended
            if not ok:
                self.answer(False, error, retire=True)
                return
            self.answer(True)
            self.current = self.next_command()
            if self.current is None:
                return
            if substratools is not None and functions.register.get_registered_functions():
                # What the script's main part would do: substratools' execute (the loop), on the loaded module
                # (running the script again would register its functions twice, which substratools refuses).
                self.outcome(functions.execute)
                return
        sys.argv = [script, *fixed, *self.current["args"]]
        # The script's top level runs here, once; its output goes to the first task's log.
        ok, error = self.outcome(lambda: runpy.run_path(script, run_name="__main__"))
        if state["looping"]:
            return  # the loop ran every task and ended
        if not ok:
            self.answer(False, error, retire=True)  # it could not even be loaded: the next task gets a fresh runner
            return
        # A script that does not call substratools' execute: each task runs it again, in a child.
        self.answer(True)
        self.current = self.next_command()
        while self.current is not None:
            sys.argv = [script, *fixed, *self.current["args"]]
            self.answer(*self.in_child(lambda: runpy.run_path(script, run_name="__main__")))
            self.current = self.next_command()


def prepare(functions) -> None:
    """Build substratools' command line parser once, in the runner, rather than in every task's child:
    building it imports modules (shutil, gettext...) and makes objects on pages a child would copy,
    milliseconds a task need not spend. The parser holds no task's data: each child parses its own
    arguments with its own copy. Nothing is changed when substratools builds it another way."""
    generate = getattr(functions, "_generate_function_cli", None)
    if generate is None:
        return
    try:
        parser = generate()
        parser.parse_known_args(["--log-level", "info"])  # compiles the patterns argparse matches with
    except (Exception, SystemExit):  # noqa: BLE001 - another substratools: each task builds its own parser
        return
    functions._generate_function_cli = lambda: parser


def main(argv: list[str]) -> None:
    mode, options, command = _arguments(argv)
    if mode == "exec":
        switch_uid(int(options["uid"]))
        os.execvpe(command[0], command, {**os.environ, **json.loads(options.get("env", "{}"))})
    elif mode == "serve":
        if os.geteuid() == 0:
            raise SystemExit("runner: serve runs after the uid switch, never as root")
        Serve(int(options["results"]), command).loop()
    else:
        raise SystemExit(f"runner: unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
