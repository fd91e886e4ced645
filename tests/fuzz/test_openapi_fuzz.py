"""Requests generated from the gateway's own OpenAPI document (schemathesis), valid and invalid,
against a real gateway and ledger: none may get a 5xx, and every refusal is JSON with a ``detail``.

Each operation gets :data:`EXAMPLES` valid cases and as many invalid ones (when it has an input that
can be invalid), derandomized (the same cases every run) and not shrunk: every failing case is
collected and reported as a curl command.
"""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from tests.gateway.test_auth import headers, login

pytestmark = pytest.mark.timeout(900)
EXAMPLES = 25
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def refusal_problem(response) -> str | None:
    """What is wrong with a response, if anything."""
    if response.status_code >= 500:
        return f"{response.status_code}: {response.text[:300]}"
    if response.status_code >= 400:
        if not response.headers.get("content-type", [""])[0].startswith("application/json"):
            return f"{response.status_code} is not JSON: {response.text[:300]}"
        body = response.json()
        if not (isinstance(body, list) or body.get("detail")):
            return f"{response.status_code} has no detail: {body}"
    return None


def can_be_invalid(document: dict, path: str, method: str) -> bool:
    """Whether an operation has an input that can be invalid: a body, or a parameter that is more than any
    string (generating invalid cases of the others only fails, after a thousand tries)."""
    operation = document["paths"][path][method.lower()]
    parameters = operation.get("parameters", [])
    return "requestBody" in operation or any(p.get("schema") != {"type": "string"} for p in parameters)


def test_generated_requests_never_get_a_server_error(net):
    url = net.org1.url
    auth = headers(login(url, net.org1.admin.username, net.org1.admin.password).json()["token"])
    document = requests.get(f"{url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        modes = [GenerationMode.POSITIVE]
        if can_be_invalid(document, operation.path, operation.method):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @SETTINGS
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case) -> None:
                response = case.call(base_url=url, headers=auth, timeout=60)
                problem = refusal_problem(response)
                if problem:
                    failures.append(f"{case.as_curl_command(headers=auth)}\n  -> {problem}")

            call()
    assert operations > 40
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:30])
