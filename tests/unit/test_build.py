"""What the local builder reads from a Dockerfile: the requirements it must provide."""

from __future__ import annotations

import pytest

from services.compute.build import BuildError, missing, pip_requirements

SUBSTRAFL_STYLE = """FROM python:3.11-slim
RUN python3.11 -m venv /home/user/venv
RUN python3.11 -m pip install -U pip && pip install -U setuptools>=70.0.0
COPY requirements.txt requirements.txt
RUN python3.11 -m pip install --no-cache-dir -r requirements.txt
ENTRYPOINT ["python3.11", "function.py", "--function-name", "train"]
"""


def test_requirement_files_inside_the_archive_are_read(tmp_path):
    (tmp_path / "dist").mkdir()
    (tmp_path / "requirements.txt").write_text(
        "substratools==1.0.0\n# a comment\nnumpy==2.4.6 \\\n    --hash=sha256:00\n"
        "file:dist/local_pkg-0.1-py3-none-any.whl\n"
    )
    found = pip_requirements(SUBSTRAFL_STYLE, tmp_path)
    assert found[:2] == ["substratools==1.0.0", "numpy==2.4.6"]
    assert found[2].endswith("dist/local_pkg-0.1-py3-none-any.whl")
    assert "pip" not in found and not any(r.startswith("setuptools") for r in found)


def test_what_the_service_interpreter_provides_is_not_installed_again():
    assert missing(["substratools==1.0.0", "numpy", "packaging>=1"]) == []
    assert missing(["numpy==1.0.0", "surely-not-installed-package"]) == ["numpy==1.0.0", "surely-not-installed-package"]


@pytest.mark.parametrize("dockerfile", ["RUN pip install -r ../outside.txt", "RUN pip install -r /etc/passwd"])
def test_requirement_files_outside_the_archive_are_refused(tmp_path, dockerfile):
    with pytest.raises(BuildError):
        pip_requirements(dockerfile, tmp_path)


@pytest.mark.parametrize(
    "line",
    [
        "RUN pip install evil @ http://127.0.0.1:5432/evil.whl",
        "RUN pip install git+https://example.invalid/repo.git",
        "RUN pip install https://example.invalid/x-1.0-py3-none-any.whl",
    ],
)
def test_a_build_reaches_the_index_and_nothing_else(tmp_path, line):
    with pytest.raises(BuildError, match="unsupported requirement"):
        pip_requirements(line, tmp_path)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"requirements.txt": "-r requirements.txt\n"}, "includes itself"),
        ({"requirements.txt": "-r a.txt\n", "a.txt": "--requirement requirements.txt\n"}, "includes itself"),
        ({"requirements.txt": "file:x.whl\n", "x.whl": ""}, "only wheels inside the archive"),
        ({"requirements.txt": "file:dist\n"}, "only wheels inside the archive"),
    ],
)
def test_a_requirements_file_that_cannot_be_followed_fails_the_build(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(BuildError, match=message):
        pip_requirements("RUN pip install -r requirements.txt", tmp_path)


def test_a_long_chain_of_includes_is_refused(tmp_path):
    for n in range(70):
        (tmp_path / f"r{n}.txt").write_text(f"-r r{n + 1}.txt\n")
    (tmp_path / "r70.txt").write_text("numpy\n")
    with pytest.raises(BuildError, match="more than 64 requirements files"):
        pip_requirements("RUN pip install -r r0.txt", tmp_path)


def test_a_file_included_many_times_is_read_once(tmp_path):
    """Each of 30 files includes the next one three times: read every time, 3**30 lines."""
    for n in range(30):
        (tmp_path / f"r{n}.txt").write_text(f"-r r{n + 1}.txt\n" * 3 + f"package-{n}\n")
    (tmp_path / "r30.txt").write_text("numpy\n")
    found = pip_requirements("RUN pip install -r r0.txt -r r5.txt", tmp_path)
    assert sorted(found) == sorted(["numpy", *(f"package-{n}" for n in range(30))])


@pytest.mark.parametrize("wheel", ["/opt/foo-1.0-py3-none-any.whl", "/opt/foo.whl"])
def test_a_wheel_outside_the_archive_is_refused(tmp_path, wheel):
    with pytest.raises(BuildError, match="unsupported requirement"):
        pip_requirements(f"RUN pip install {wheel}", tmp_path)


def test_a_package_named_like_a_wheel_is_a_package_name():
    assert missing(["x.whl"]) == ["x.whl"]  # not read as a wheel's name-version
