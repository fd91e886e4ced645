"""One trace per user action, across every process it reaches (issue 11, ARCHITECTURE §9).

Every process of the package's network exports its spans over OTLP to a real receiver in this test
process (``collector``). One SDK call registers a task; the spans that share that call's trace id must
come from the gateway, the ledger, the event service (which turned the ledger event into work), compute
(which ran the task) and storage (which served its inputs and kept its output).
"""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
from substra.sdk import models, schemas

from tests.sdk.conftest import sdk_client
from tools.samples import flassets

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PUBLIC = schemas.Permissions(public=True, authorized_ids=[])
MODEL = schemas.AssetKind.model
CALL = "POST /task/bulk_create/"


def _task_of_one_call(client, folder) -> str:
    """A dataset, a sample and a train function, then the one call under trace: add_task."""
    org = client.organization_info().organization_id
    dataset = client.add_dataset(
        schemas.DatasetSpec(
            name="traced",
            data_opener=flassets.write(folder / "opener.py", flassets.OPENER),
            description=flassets.write(folder / "dataset.md", "# traced\n"),
            permissions=PUBLIC,
            logs_permission=PUBLIC,
        )
    )
    rows = np.arange(12, dtype=float).reshape(4, 3)
    flassets.write(folder / "sample" / "data.csv", "\n".join(",".join(str(x) for x in row) for row in rows) + "\n")
    sample = client.add_data_sample(schemas.DataSampleSpec(path=folder / "sample", data_manager_keys=[dataset]))
    function = client.add_function(
        schemas.FunctionSpec(
            name="traced-train",
            description=flassets.write(folder / "train.md", "# train\n"),
            file=flassets.write(folder / "train.tar.gz", flassets.function_archive("train")),
            permissions=PUBLIC,
            inputs=[
                schemas.FunctionInputSpec(
                    identifier="opener", kind=schemas.AssetKind.data_manager, multiple=False, optional=False
                ),
                schemas.FunctionInputSpec(
                    identifier="datasamples", kind=schemas.AssetKind.data_sample, multiple=True, optional=False
                ),
                schemas.FunctionInputSpec(identifier="models", kind=MODEL, multiple=True, optional=True),
            ],
            outputs=[schemas.FunctionOutputSpec(identifier="model", kind=MODEL, multiple=False)],
        )
    )
    client.wait_function(function, timeout=60, polling_period=0.3)
    return client.add_task(
        schemas.TaskSpec(
            key=str(uuid.uuid4()),
            function_key=function,
            worker=org,
            inputs=[
                schemas.InputRef(identifier="opener", asset_key=dataset),
                schemas.InputRef(identifier="datasamples", asset_key=sample),
            ],
            outputs={"model": schemas.ComputeTaskOutputSpec(permissions=PUBLIC, transient=False)},
        )
    )


def test_one_sdk_call_is_one_trace_through_every_service(organizations, collector, tmp_path):
    client = sdk_client(organizations[0])
    task_key = _task_of_one_call(client, tmp_path)
    task = client.wait_task(task_key, timeout=90, polling_period=0.3)
    assert task.status == models.ComputeTaskStatus.done

    def trace_of_the_call():
        calls = [s for s in collector.spans() if s.service.startswith("gateway") and s.name == CALL]
        return calls[-1].trace_id if calls else None

    def orphans_of(spans):
        ids = {s.span_id for s in spans}
        return [(s.service, s.name) for s in spans if s.parent_span_id and s.parent_span_id not in ids]

    wanted = {"gateway", "asset", "event", "compute", "storage"}
    deadline = time.monotonic() + 20  # exporters send in batches, a parent after its children
    while True:
        trace_id = trace_of_the_call()
        spans = [s for s in collector.spans() if s.trace_id == trace_id] if trace_id else []
        services = {s.service.split("-")[0] for s in spans}
        if (wanted <= services and not orphans_of(spans)) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert trace_id, "the gateway exported no span for the call"
    assert services >= wanted, f"the call's trace reached only {sorted(services)}"
    # One tree: every span but the gateway's root names a parent inside the same trace.
    assert orphans_of(spans) == []
    client.logout()
