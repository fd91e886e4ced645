"""How the local executor honours a Dockerfile: which instructions run, which do nothing here, and
which fail the build naming themselves (no I/O: the plan only)."""

from __future__ import annotations

import pytest

from services.compute.domain import dockerfile
from services.compute.domain.errors import BuildError

ENV = {"PATH": "/tessera/shims:/usr/bin:/bin", "HOME": "/tmp"}
ENTRYPOINT = 'ENTRYPOINT ["python3", "function.py", "--function-name", "train"]'


def _files(source: str) -> list[tuple[str, bool]]:
    """An archive with function.py, data/ (a folder) and two .csv files."""
    entries = {"function.py": False, "data": True, "a.csv": False, "b.csv": False, ".": True}
    if source == "*.csv":
        return [("a.csv", False), ("b.csv", False)]
    return [(source, entries[source])] if source in entries else []


def _plan(text: str) -> list[dockerfile.Step]:
    return dockerfile.plan(text, ENV, _files)


def _script(step: dockerfile.Step) -> str:
    return step.argv[-1]


def test_instructions_are_read_with_their_continuations_without_comments():
    text = "# a comment\nfrom python:3.11\n\nRUN echo a \\\n  # dropped\n  && echo b\nrun true\n"
    found = dockerfile.parse(text)
    assert [(i.keyword, i.arguments, i.line) for i in found] == [
        ("FROM", "python:3.11", 2),
        ("RUN", "echo a && echo b", 4),
        ("RUN", "true", 7),
    ]


def test_run_commands_run_in_the_function_s_directory_with_env_and_arg_set():
    text = 'FROM python\nENV GREETING="hello world" PATH="/opt/bin:$PATH"\nARG LEVEL=3\nRUN echo $GREETING > g.txt\n'
    steps = _plan(text + ENTRYPOINT)
    run = steps[3]
    assert run.argv[:2] == ["/bin/sh", "-c"]
    script = _script(run)
    assert 'export GREETING="hello world"' in script and 'export PATH="/opt/bin:$PATH"' in script
    assert 'export LEVEL="3"' in script
    assert "cd /tessera/work" in script and script.endswith("\necho $GREETING > g.txt")
    assert script.index('export PATH="/tessera/shims') < script.index('export PATH="/opt/bin')  # ENV after the base
    assert [bool(s.argv) for s in steps] == [False, False, False, True, False]


def test_an_absolute_workdir_is_the_function_s_directory_and_a_relative_one_a_folder_in_it():
    steps = _plan(
        "FROM python\nWORKDIR /usr/src/app\nWORKDIR model\nRUN mkdir out\nWORKDIR /usr/src/app/deep\nRUN pwd\n"
    )
    assert not steps[1].argv  # nothing to create: it is the function's directory
    assert "mkdir -p /tessera/work/model && cd /tessera/work/model" in _script(steps[2])
    assert "cd /tessera/work/model" in _script(steps[3])
    assert "cd /tessera/work/deep" in _script(steps[5])  # under the anchor: a folder of the function's directory


def test_copy_copies_from_the_archive_as_docker_does():
    text = "FROM python\nWORKDIR /app\nCOPY data models/\nCOPY function.py .\nCOPY *.csv csv/\n"
    steps = _plan(text + "COPY a.csv /app/renamed.csv\n")
    assert "cp -R -- /tessera/context/data/. /tessera/work/models/" in _script(steps[2])
    assert "cp -- /tessera/context/function.py /tessera/work/" in _script(steps[3])
    script = _script(steps[4])
    assert "cp -- /tessera/context/a.csv /tessera/work/csv/" in script and "/tessera/context/b.csv" in script
    assert "cp -- /tessera/context/a.csv /tessera/work/renamed.csv" in _script(steps[5])
    assert _script(steps[2]).startswith("set -e\n")


def test_exec_form_runs_its_argv():
    (_, run) = _plan('FROM python\nRUN ["touch", "a file"]\n')
    assert _script(run).endswith("\nexec touch 'a file'")


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("RUN apt-get update && apt-get install -y libgomp1", "cannot install system packages"),
        ("RUN sudo DEBIAN_FRONTEND=noninteractive apt install git", "cannot install system packages"),
        ("RUN apk add --no-cache git", "cannot install system packages"),
        ("RUN --mount=type=cache,target=/root/.cache pip install x", "--mount cannot be honoured"),
        ("FROM python:3.12 AS second", "multi-stage build"),
        ("COPY --from=builder /app .", "--from cannot be honoured"),
        ("ADD https://example.invalid/x.tgz .", "a build has no network"),
        ("ADD data.tar.gz .", "archive ADD extracts"),
        ("COPY missing.py .", "missing.py is not in the archive"),
        ("COPY ../secret .", "outside the archive"),
        ("COPY function.py /etc/function.py", "outside the function's directory"),
        ("WORKDIR ../..", "outside the function's directory"),
        ("FROBNICATE now", "unknown instruction"),
    ],
)
def test_what_the_local_executor_cannot_honour_fails_the_build_naming_the_instruction(line, why):
    with pytest.raises(BuildError) as refused:
        _plan(f"FROM python:3.11\nWORKDIR /app\n{line}\n{ENTRYPOINT}\n")
    assert f"line 3: {line}" in str(refused.value) and why in str(refused.value)


def test_package_updates_removals_and_user_management_run_against_shims_that_do_nothing():
    steps = _plan("FROM python\nRUN apt-get update -y && apt-get purge -y build-essential\nRUN adduser user\n")
    assert all(step.argv for step in steps[1:])  # run: the shims answer
    shims = dockerfile.shims("/venv/bin/python")
    assert "cannot install system packages" in shims["apt-get"] and "exit 100" in shims["apt-get"]
    assert "skipped" in shims["adduser"] and "skipped" in shims["pip"] and "skipped" in shims["pip3.11"]
    assert 'exec /venv/bin/python "$@"' in shims["python3.11"] and '[ "$2" = pip ]' in shims["python3"]
    assert shims["sudo"].endswith('exec "$@"\n')


def test_instructions_without_effect_here_are_noted():
    steps = _plan(f'FROM python\nLABEL a=b\nUSER nobody\nEXPOSE 80\nCMD ["x"]\n{ENTRYPOINT}\n')
    assert all(not step.argv and step.note for step in steps)


def test_tasks_get_the_dockerfile_s_env_and_start_in_its_last_workdir():
    text = "\n".join(
        [
            "FROM python:3.11",
            "ARG TOOL=/opt/tool",
            "WORKDIR /usr/src/app",
            'ENV GREETING="hello there" PATH=${TOOL}/bin:$PATH',
            "ENV LEGACY some words",
            "ENV EMPTY=${NOPE:-fallback} SET=${GREETING:+yes} MISSING=$NOPE",
            "WORKDIR data",
            "WORKDIR ../models",
            ENTRYPOINT,
        ]
    )
    runtime = dockerfile.runtime(text, {"PATH": "/usr/bin:/bin"})
    assert runtime.env == {
        "GREETING": "hello there",
        "PATH": "/opt/tool/bin:/usr/bin:/bin",
        "LEGACY": "some words",
        "EMPTY": "fallback",
        "SET": "yes",
        "MISSING": "",
    }  # ARG is for the build only
    assert runtime.unresolved == {"EMPTY", "MISSING"}
    assert (runtime.image_workdir, runtime.workdir) == ("/usr/src/app/models", "models")
    # Without a base, what the image's base would give is unresolved.
    assert dockerfile.runtime(text).unresolved == {"PATH", "EMPTY", "MISSING"}
    assert dockerfile.runtime("FROM python:3.11\nWORKDIR /app\n" + ENTRYPOINT) == dockerfile.Runtime(
        {}, frozenset(), "/app", ""
    )
    assert dockerfile.runtime("FROM python:3.11\n" + ENTRYPOINT).image_workdir == ""
