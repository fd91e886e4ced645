"""Builds: whether a build message is acted on, and what the ledger records of a build."""

from __future__ import annotations

import pytest
from tessera.asset.v1 import resources_pb2 as res

from services.compute.domain.builds import BuildStep, build_failure, build_step, built


@pytest.mark.parametrize(
    ("owner", "status", "step"),
    [
        ("org1", res.FUNCTION_STATUS_WAITING, BuildStep.CLAIM),
        ("org1", res.FUNCTION_STATUS_BUILDING, BuildStep.RESUME),
        ("org1", res.FUNCTION_STATUS_READY, BuildStep.SKIP),
        ("org1", res.FUNCTION_STATUS_FAILED, BuildStep.SKIP),
        ("org1", res.FUNCTION_STATUS_CANCELED, BuildStep.SKIP),
        ("org2", res.FUNCTION_STATUS_WAITING, BuildStep.SKIP),
        ("org2", res.FUNCTION_STATUS_BUILDING, BuildStep.SKIP),
    ],
)
def test_only_this_organization_s_waiting_or_interrupted_builds_are_done(owner, status, step):
    assert build_step(res.Function(key="f", owner=owner, status=status), "org1") is step


def test_a_failed_build_is_a_build_error_of_the_function():
    report = build_failure("f-1")
    assert (report.asset_key, report.asset_type, report.error_type) == (
        "f-1",
        res.FAILED_ASSET_FUNCTION,
        res.BUILD_ERROR,
    )


def test_the_local_image_of_a_function_is_its_archive():
    archive = res.Addressable(checksum="abc", storage_address="http://org1/function/f-1/file/")
    assert built(res.Function(key="f-1", archive=archive)).image == archive
