"""Real substratools functions and openers on small numpy data, packed as Substra archives.

The functions follow the substratools 1.0.0 contract (contract §9): a Dockerfile with an exec-form
ENTRYPOINT naming the function, a script that registers functions and calls ``tools.execute()``.
The model is a mean vector: training averages its data into the incoming model, aggregation
averages models, prediction subtracts the model, testing scores ``1 / (1 + mean squared error)``;
``step`` is a trivial function for chains (the previous model plus one).
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np

OPENER = """
import os

import numpy as np
import substratools as tools


class CsvOpener(tools.Opener):
    def get_data(self, folders):
        return np.concatenate([np.loadtxt(os.path.join(f, "data.csv"), delimiter=",", ndmin=2) for f in folders])

    def fake_data(self, n_samples=None):
        return np.zeros((n_samples or 1, 2))
"""

FUNCTIONS = """
import json
import sys

import numpy as np
import substratools as tools


def _load(path):
    with open(path) as f:
        return np.array(json.load(f))


def _save(vector, path):
    with open(path, "w") as f:
        json.dump([float(x) for x in vector], f)


@tools.register
def step(inputs, outputs, task_properties):
    models = inputs.get("models") or []
    if isinstance(models, str):
        models = [models]
    previous = _load(models[0]) if models else np.zeros(3)
    _save(previous + 1.0, outputs["model"])


@tools.register
def train(inputs, outputs, task_properties):
    data = inputs["datasamples"]
    models = inputs.get("models") or []
    if isinstance(models, str):
        models = [models]
    mean = data.mean(axis=0)
    if models:
        mean = (mean + np.mean([_load(p) for p in models], axis=0)) / 2
    print(f"train rank {task_properties['rank']}: {len(data)} rows")
    _save(mean, outputs["model"])


@tools.register
def aggregate(inputs, outputs, task_properties):
    _save(np.mean([_load(p) for p in inputs["models"]], axis=0), outputs["model"])


@tools.register
def predict(inputs, outputs, task_properties):
    _save(np.abs(inputs["datasamples"] - _load(inputs["models"])).mean(axis=0), outputs["predictions"])


@tools.register
def score(inputs, outputs, task_properties):
    error = float(np.square(_load(inputs["predictions"])).mean())
    tools.save_performance(1.0 / (1.0 + error), outputs["performance"])


@tools.register
def explode(inputs, outputs, task_properties):
    raise RuntimeError("this function fails on purpose")


@tools.register
def sleep(inputs, outputs, task_properties):
    import time

    print("sleeping", flush=True)
    time.sleep(120)


@tools.register
def nap(inputs, outputs, task_properties):
    import time

    time.sleep(4)
    _save(np.zeros(3), outputs["model"])


tools.execute()
"""


def function_archive(name: str, dockerfile: str | None = None, extra: dict[str, str | bytes] | None = None) -> bytes:
    """A tar.gz with a Dockerfile whose ENTRYPOINT runs ``name`` from ``function.py``."""
    dockerfile = dockerfile or (
        "FROM python:3.11-slim\nRUN pip install substratools numpy\nCOPY function.py .\n"
        f'ENTRYPOINT ["python3", "function.py", "--function-name", "{name}"]\n'
    )
    files = {"Dockerfile": dockerfile, "function.py": FUNCTIONS, **(extra or {})}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member, text in files.items():
            data = text if isinstance(text, bytes) else text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def data_sample_zip(rows: np.ndarray) -> bytes:
    """A zip of one folder's content: ``data.csv``."""
    buffer = io.BytesIO()
    text = "\n".join(",".join(f"{x:.6f}" for x in row) for row in rows)
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data.csv", text + "\n")
    return buffer.getvalue()


def write(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path
