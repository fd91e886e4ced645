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
