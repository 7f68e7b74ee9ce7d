"""schemathesis against the running service's own /openapi.json: no 5xx, no response outside the schema.

The schema is read from the live server, so what is tested is what clients see. schemathesis's pytest
plugin (``from_fixture``) fails under pytest 9 (``Function._nodeid``), so each operation's Hypothesis
strategy is driven directly with ``@given``: same cases, same checks. Admin operations run with the token,
so their 200/409 paths are exercised too.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from .conftest import AUTH

OPERATIONS = ["GET /healthz", "GET /readyz", "GET /metrics", "GET /v1/models", "GET /v1/models/{version}",
              "GET /v1/models/{version}/curves", "POST /v1/predict", "POST /v1/predict/batch", "POST /v1/review",
              "GET /v1/review/progress/{token}", "GET /v1/review/{result_id}/download", "POST /v1/admin/reload",
              "POST /v1/admin/promote/{version}"]


@pytest.fixture(scope="module")
def operations(fuzz_server) -> dict:
    schema = schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")
    ops = {f"{op.method.upper()} {op.path}": op for op in (r.ok() for r in schema.get_all_operations())}
    assert set(ops) == set(OPERATIONS), sorted(ops)
    return ops


def _checks():
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
            response_schema_conformance]


@pytest.mark.parametrize("name", OPERATIONS)
def test_openapi_contract(fuzz_server, operations, name):
    op = operations[name]
    checks = _checks()
    calls = []

    @settings(max_examples=20, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy())
    def run(case):
        headers = AUTH if case.path.startswith("/v1/admin") else None
        response = case.call_and_validate(base_url=fuzz_server.url, headers=headers, checks=checks, timeout=30)
        assert response.elapsed < 15
        calls.append(response.status_code)

    run()
    assert calls and all(code < 500 for code in calls), calls
