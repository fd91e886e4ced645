"""A function's Dockerfile as the local executor builds it: each instruction honoured, skipped as
having no effect here, or refused (the build fails with BUILD_ERROR naming the instruction).

The local executor has no image: the function's directory stands for the image's working
directory. It holds the archive's files from the start (as if ``COPY . .``, so Dockerfiles that copy
nothing keep working), the build's steps run in jails against it, and tasks run in it. Inside a
build jail it is :data:`WORK` (writable), the archive as uploaded :data:`CONTEXT` (read-only) and
the shims :data:`SHIMS`, first on ``PATH``.

=================  ===========================================================================
``FROM``           the base is the service's interpreter (with substratools); a second ``FROM``
                   (a multi-stage build) is refused
``RUN``            run by ``/bin/sh -c`` (or ``SHELL``) in a jail without network, in the current
                   ``WORKDIR``, with ``ENV`` and ``ARG`` set; what it writes in the function's
                   directory stays. ``pip install``/``python -m pip``/``python -m venv`` do nothing
                   (the build's environment has installed every requirement the Dockerfile's
                   pip commands name, before the first step); user management and package
                   managers' updates and removals do nothing; a system package install is refused
``COPY``, ``ADD``  files of the archive copied in the jail (``--from``, URLs and archives to
                   extract are refused; ``--chown``/``--chmod`` have no effect)
``WORKDIR``        an absolute path names the function's directory itself; a relative one a
                   folder inside it, created; tasks start in the last one (:func:`runtime`)
``ENV``, ``ARG``   set for the later steps; ``ENV`` also for the tasks (:func:`runtime`)
``SHELL``          the shell of later ``RUN`` commands
``ENTRYPOINT``     how tasks start (read by :mod:`services.kit.archives`)
others             ``CMD``, ``LABEL``, ``USER``, ``EXPOSE``... have no effect on a task here
=================  ===========================================================================
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from services.compute.domain.errors import BuildError

WORK = "/tessera/work"
CONTEXT = "/tessera/context"
SHIMS = "/tessera/shims"

NO_EFFECT = {
    "CMD",
    "ENTRYPOINT",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "VOLUME",
    "USER",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "ONBUILD",
}
PACKAGE_MANAGERS = {"apt-get", "apt", "aptitude", "apk", "yum", "dnf", "microdnf", "zypper", "conda", "mamba"}
INSTALLS = {"install", "add", "groupinstall", "localinstall", "reinstall", "build-dep"}
USER_TOOLS = {"addgroup", "adduser", "groupadd", "useradd", "usermod", "groupmod"}
ARCHIVES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


@dataclass(frozen=True)
class Instruction:
    """One instruction: its keyword (upper case), its arguments, as written (continuations joined)."""

    keyword: str
    arguments: str
    line: int

    @property
    def text(self) -> str:
        return f"{self.keyword} {self.arguments}".strip()

    def refused(self, why: str) -> BuildError:
        """The build failure of an instruction the local executor cannot honour."""
        return BuildError(f"line {self.line}: {self.text}: {why}")


@dataclass(frozen=True)
class Step:
    """What one instruction does: a command to run in a build jail, or nothing (``argv`` empty)."""

    instruction: Instruction
    argv: list[str] = field(default_factory=list)
    note: str = ""  # why it does nothing, when it does nothing


def parse(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile: comments and blank lines dropped, continuations joined."""
    found: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction is dropped
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        pending += line
        keyword, _, arguments = pending.strip().partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip(), start))
        pending = ""
    if pending.strip():
        keyword, _, arguments = pending.strip().partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip(), start))
    return found


def _json_list(arguments: str) -> list[str] | None:
    """The exec (JSON) form of an instruction's arguments, or None when it is the shell form."""
    if not arguments.startswith("["):
        return None
    try:
        value = json.loads(arguments)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _flags(instruction: Instruction, arguments: str, allowed: set[str]) -> tuple[dict[str, str], str]:
    """Leading ``--flag[=value]`` options and the rest; a flag outside ``allowed`` is refused."""
    flags: dict[str, str] = {}
    rest = arguments
    while rest.startswith("--"):
        token, _, rest = rest.partition(" ")
        rest = rest.lstrip()
        name, _, value = token[2:].partition("=")
        if name not in allowed:
            raise instruction.refused(f"--{name} cannot be honoured by the local executor")
        flags[name] = value
    return flags, rest


def _export(name: str, value: str) -> str:
    """A shell line setting ``name``; ``$VAR`` in the value expands as Docker expands it."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise BuildError(f"{name!r} is not a variable name")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`")
    return f'export {name}="{escaped}"'


def _assignments(instruction: Instruction) -> list[tuple[str, str]]:
    """``ENV``/``ARG`` pairs: ``k=v k2="v 2"`` or the legacy ``ENV k some value``."""
    try:
        tokens = shlex.split(instruction.arguments)
    except ValueError as exc:
        raise instruction.refused(f"cannot be parsed ({exc})") from None
    if not tokens:
        raise instruction.refused("names no variable")
    if instruction.keyword == "ENV" and "=" not in tokens[0]:
        return [(tokens[0], " ".join(tokens[1:]))]
    pairs = []
    for token in tokens:
        name, equals, value = token.partition("=")
        if instruction.keyword == "ARG" and not equals:
            continue  # an ARG without default: unset unless given, and nothing is given here
        if not equals:
            raise instruction.refused(f"{token!r} is not NAME=value")
        pairs.append((name, value))
    return pairs


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _simple_commands(command: str) -> list[list[str]]:
    """The simple commands of a shell command line (split on ``&&``, ``||``, ``;``, ``|``, ``&``)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands, current = [], []
    try:
        for token in lexer:
            if token in ("&&", "||", ";", "|", "&", ";;", "(", ")"):
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(token)
    except ValueError:
        return []  # unbalanced quotes: the shell will say so
    if current:
        commands.append(current)
    return commands


def _installs_system_packages(command: str) -> bool:
    for words in _simple_commands(command):
        while words and (words[0] == "sudo" or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0])):
            words = words[1:]  # sudo and VAR=value prefixes
        if words and posixpath.basename(words[0]) in PACKAGE_MANAGERS and INSTALLS & set(words[1:]):
            return True
    return False


VARIABLE = re.compile(r"\$(?:([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\})")


def substitute(value: str, known: dict[str, str]) -> tuple[str, set[str]]:
    """``value`` with ``$NAME``, ``${NAME}``, ``${NAME:-word}`` and ``${NAME:+word}`` replaced as Docker
    replaces them in ``ENV``, and the names it used that ``known`` lacks (they read as empty)."""
    missing: set[str] = set()

    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in known:
            missing.add(name)
        current = known.get(name, "")
        if match.group(3) == "-":
            return current or match.group(4)
        if match.group(3) == "+":
            return match.group(4) if current else ""
        return current

    return VARIABLE.sub(replace, value), missing


@dataclass(frozen=True)
class Runtime:
    """What a Dockerfile sets for the process of the image: its ``ENV`` and its last ``WORKDIR``."""

    env: dict[str, str]  # ENV values in order, their variables replaced (ARG and earlier ENV, then the base)
    unresolved: frozenset[str]  # ENV names whose value uses a variable neither the Dockerfile nor the base sets
    image_workdir: str  # the last WORKDIR as an absolute path of the image ("" when there is none)
    workdir: str  # the same, relative to the function's directory ("" for the directory itself)


class _Build:
    """The state a Dockerfile's instructions change, one after another."""

    def __init__(self, base_env: dict[str, str], expand: Callable[[str], list[tuple[str, bool]]]) -> None:
        self.exports = [_export(name, value) for name, value in base_env.items()]
        self.expand = expand
        self.known = dict(base_env)  # the variables an ENV value may use
        self.env: dict[str, str] = {}  # what ENV set, for the tasks
        self.unresolved: set[str] = set()
        self.image_cwd = ""
        self.cwd = WORK
        self.anchor: str | None = None  # the image path the function's directory stands for (the last
        # absolute WORKDIR; before one, paths are taken from the image's root, Docker's default WORKDIR)
        self.shell = ["/bin/sh", "-c"]
        self.bases = 0

    def prelude(self) -> str:
        return "\n".join([*self.exports, f"mkdir -p {shlex.quote(self.cwd)} && cd {shlex.quote(self.cwd)} || exit 1"])

    def inside(self, instruction: Instruction, path: str) -> str:
        """The jail path of an image path (relative to the current WORKDIR); refused when outside the
        function's directory."""
        if posixpath.isabs(path):
            normal, anchor = posixpath.normpath(path), self.anchor or "/"
            if not _under(normal, anchor):
                raise instruction.refused(
                    f"{path} is outside the function's directory (WORKDIR {anchor}): the local executor "
                    "has no image file system"
                )
            relative = posixpath.relpath(normal, anchor)
            target = posixpath.normpath(posixpath.join(WORK, relative))
        else:
            target = posixpath.normpath(posixpath.join(self.cwd, path))
        if target != WORK and not target.startswith(WORK + "/"):
            raise instruction.refused(f"{path} is outside the function's directory")
        return target

    def step(self, instruction: Instruction) -> Step:
        keyword = instruction.keyword
        handler = getattr(self, f"_{keyword.lower()}", None)
        if handler is not None:
            return handler(instruction)
        if keyword in NO_EFFECT:
            return Step(instruction, note="no effect on a task run by the local executor")
        raise instruction.refused("unknown instruction, or one the local executor cannot honour")

    def _from(self, instruction: Instruction) -> Step:
        self.bases += 1
        if self.bases > 1:
            raise instruction.refused("a multi-stage build cannot be honoured by the local executor")
        return Step(instruction, note="the base is the service's interpreter, with substratools")

    def _env(self, instruction: Instruction) -> Step:
        pairs = _assignments(instruction)
        try:
            self.exports += [_export(name, value) for name, value in pairs]
        except BuildError as exc:
            raise instruction.refused(str(exc)) from None
        for name, value in pairs:
            value, missing = substitute(value, self.known)
            self.known[name] = value
            if instruction.keyword == "ENV":
                self.env[name] = value
                if missing:
                    self.unresolved.add(name)
                else:
                    self.unresolved.discard(name)
        if instruction.keyword == "ENV":
            return Step(instruction, note="set for the later steps and the tasks")
        return Step(instruction, note="set for the later steps")

    _arg = _env

    def _shell(self, instruction: Instruction) -> Step:
        shell = _json_list(instruction.arguments)
        if not shell:
            raise instruction.refused("SHELL takes a JSON list")
        self.shell = shell
        return Step(instruction, note="the shell of later RUN commands")

    def _workdir(self, instruction: Instruction) -> Step:
        path = instruction.arguments.strip()
        if not path:
            raise instruction.refused("names no folder")
        self.image_cwd = posixpath.normpath(posixpath.join(self.image_cwd or "/", path))
        if posixpath.isabs(path):
            normal = posixpath.normpath(path)
            if self.anchor is None or not _under(normal, self.anchor):
                self.anchor, self.cwd = normal, WORK  # the function's directory now stands for it
                return Step(instruction, note="the function's directory (where tasks run)")
        self.cwd = self.inside(instruction, path)
        return Step(instruction, ["/bin/sh", "-c", self.prelude()])

    def _run(self, instruction: Instruction) -> Step:
        _flags(instruction, instruction.arguments, set())  # --mount, --network...: refused
        if instruction.arguments.startswith("<<"):
            raise instruction.refused("a heredoc cannot be honoured by the local executor")
        argv = _json_list(instruction.arguments)
        if argv is not None:
            if not argv:
                raise instruction.refused("runs nothing")
            script = f"{self.prelude()}\nexec {shlex.join(argv)}"
            return Step(instruction, ["/bin/sh", "-c", script])
        command = instruction.arguments
        if _installs_system_packages(command):
            raise instruction.refused("the local executor cannot install system packages")
        return Step(instruction, [*self.shell, f"{self.prelude()}\n{command}"])

    def _copy(self, instruction: Instruction) -> Step:
        flags, rest = _flags(instruction, instruction.arguments, {"chown", "chmod", "link", "parents"})
        del flags  # ownership and modes are the jail's: no effect here
        paths = _json_list(rest)
        if paths is None:
            try:
                paths = shlex.split(rest)
            except ValueError as exc:
                raise instruction.refused(f"cannot be parsed ({exc})") from None
        if len(paths) < 2:
            raise instruction.refused("needs at least one source and a destination")
        *sources, dest = paths
        into = dest.endswith("/") or posixpath.basename(dest) in (".", "..") or len(sources) > 1
        target = self.inside(instruction, dest)
        lines = ["set -e", self.prelude()]
        for source in sources:
            if "://" in source:
                raise instruction.refused("a URL cannot be fetched: a build has no network")
            if instruction.keyword == "ADD" and source.endswith(ARCHIVES):
                raise instruction.refused("an archive ADD extracts cannot be honoured by the local executor")
            normal = posixpath.normpath(source.lstrip("/") or ".")
            if normal == ".." or normal.startswith("../"):
                raise instruction.refused(f"{source} is outside the archive")
            matches = self.expand(normal)
            if not matches:
                raise instruction.refused(f"{source} is not in the archive")
            for relative, is_dir in matches:
                origin = shlex.quote(posixpath.join(CONTEXT, relative))
                if is_dir:  # a folder's content, as Docker copies it
                    lines.append(f"mkdir -p {shlex.quote(target)} && cp -R -- {origin}/. {shlex.quote(target)}/")
                elif into:
                    lines.append(f"mkdir -p {shlex.quote(target)} && cp -- {origin} {shlex.quote(target)}/")
                else:
                    parent = shlex.quote(posixpath.dirname(target))
                    lines.append(f"mkdir -p {parent} && cp -- {origin} {shlex.quote(target)}")
        return Step(instruction, ["/bin/sh", "-c", "\n".join(lines)])

    _add = _copy


def plan(dockerfile: str, base_env: dict[str, str], expand: Callable[[str], list[tuple[str, bool]]]) -> list[Step]:
    """The build steps of ``dockerfile``, in order; BuildError naming the first instruction that the
    local executor cannot honour (before anything runs). ``base_env`` is exported first in every
    step; ``expand(path)`` lists the archive's entries a COPY source names (relative path, is a folder)."""
    build = _Build(base_env, expand)
    return [build.step(instruction) for instruction in parse(dockerfile)]


def runtime(dockerfile: str, base_env: dict[str, str] | None = None) -> Runtime:
    """What ``dockerfile`` sets for its tasks, ``ENV`` values resolved against ``base_env`` (the process's
    environment before the image's); BuildError as :func:`plan`. Only the instructions that change it are
    read: COPY sources are not looked up."""
    build = _Build(base_env or {}, lambda source: [(source, False)])
    for instruction in parse(dockerfile):
        if instruction.keyword in ("ENV", "ARG", "WORKDIR"):
            build.step(instruction)
    relative = posixpath.relpath(build.cwd, WORK)
    return Runtime(
        env=dict(build.env),
        unresolved=frozenset(build.unresolved),
        image_workdir=build.image_cwd,
        workdir="" if relative == "." else relative,
    )


def shims(python: str) -> dict[str, str]:
    """The scripts first on a build step's ``PATH`` (name → content): what the local executor does
    instead of pip, virtualenvs, package managers and user management, and ``python`` as the build's
    interpreter."""
    skip_pip = (
        '#!/bin/sh\necho "[tessera] skipped: $(basename "$0") $* (the Dockerfile\'s pip requirements were '
        "installed into the build's environment before its first step)\"\nexit 0\n"
    )
    interpreter = (
        "#!/bin/sh\n"
        'if [ "$1" = "-m" ] && { [ "$2" = pip ] || [ "$2" = venv ] || [ "$2" = ensurepip ]; }; then\n'
        '  echo "[tessera] skipped: $(basename "$0") $* (the build\'s environment is made by the local executor)"\n'
        "  exit 0\n"
        "fi\n"
        f'exec {shlex.quote(python)} "$@"\n'
    )
    package_manager = (
        "#!/bin/sh\n"
        'for word in "$@"; do\n'
        '  case "$word" in ' + "|".join(sorted(INSTALLS)) + ")\n"
        '    echo "[tessera] $(basename "$0") $*: the local executor cannot install system packages" >&2\n'
        "    exit 100;;\n"
        "  esac\n"
        "done\n"
        'echo "[tessera] skipped: $(basename "$0") $* (no system packages to update or remove here)"\n'
        "exit 0\n"
    )
    users = '#!/bin/sh\necho "[tessera] skipped: $(basename "$0") $* (tasks run as a uid of their own)"\nexit 0\n'
    scripts = {"pip": skip_pip, "pip3": skip_pip, "python": interpreter, "python3": interpreter}
    scripts.update({f"pip3.{minor}": skip_pip for minor in range(6, 16)})
    scripts.update({f"python3.{minor}": interpreter for minor in range(6, 16)})
    scripts.update(dict.fromkeys(PACKAGE_MANAGERS, package_manager))
    scripts.update(dict.fromkeys(USER_TOOLS, users))
    scripts["sudo"] = '#!/bin/sh\nexec "$@"\n'
    return scripts
