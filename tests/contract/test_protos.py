"""Contract checks on the API definition: buf lint, HTTP annotations, subjects ⇄ payloads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from google.api import annotations_pb2
from tessera.asset.v1 import asset_service_pb2, events_pb2
from tessera.compute.v1 import compute_service_pb2, work_pb2
from tessera.event.v1 import event_service_pb2
from tessera.storage.v1 import storage_service_pb2

from services.kit import subjects
from tests.conftest import REPO

SERVICES = [
    asset_service_pb2.DESCRIPTOR.services_by_name["AssetService"],
    storage_service_pb2.DESCRIPTOR.services_by_name["StorageService"],
    compute_service_pb2.DESCRIPTOR.services_by_name["ComputeService"],
    event_service_pb2.DESCRIPTOR.services_by_name["EventService"],
]


def test_buf_lint_is_clean():
    buf = Path(sys.executable).parent / "buf"
    result = subprocess.run([str(buf), "lint"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _http_rules():
    for service in SERVICES:
        for method in service.methods:
            options = method.GetOptions()
            if options.HasExtension(annotations_pb2.http):
                yield method, options.Extensions[annotations_pb2.http]


def test_http_routes_are_unique_and_bind_existing_fields():
    seen = {}
    for method, rule in _http_rules():
        verb = rule.WhichOneof("pattern")
        template = getattr(rule, verb)
        assert template.startswith("/") and not template.endswith("/"), template
        assert (verb, template) not in seen, f"{verb} {template} bound twice"
        seen[(verb, template)] = method.full_name
        request_fields = {f.name for f in method.input_type.fields}
        for segment in template.split("/"):
            if segment.startswith("{"):
                assert segment.strip("{}").split("=")[0] in request_fields, (method.full_name, segment)
        if rule.body not in ("", "*"):
            assert rule.body in request_fields, method.full_name
    # The routes the Substra SDK reads most (contract §4) are declared.
    for route in [("get", "/task/{key}"), ("get", "/compute_plan/{key}"), ("post", "/task/bulk_create")]:
        assert route in seen, route


def test_every_nats_subject_names_a_protobuf_payload_documented_beside_it():
    events_doc = (REPO / "protos/tessera/asset/v1/events.proto").read_text()
    assert subjects.LEDGER_STREAM in events_doc
    assert "ledger.events.<channel>.<asset_kind>" in events_doc
    assert "Event" in events_pb2.DESCRIPTOR.message_types_by_name
    work_doc = (REPO / "protos/tessera/compute/v1/work.proto").read_text()
    assert subjects.WORK_STREAM in work_doc
    payloads = {"build": "BuildFunction", "run": "RunTask", "teardown": "Teardown", "prepare": "PrepareRunner"}
    for kind in subjects.WORK_KINDS:
        assert f"work.<org>.{kind}" in work_doc
        assert payloads[kind] in work_pb2.DESCRIPTOR.message_types_by_name
