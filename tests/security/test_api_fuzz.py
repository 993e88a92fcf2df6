"""Schemathesis over the OpenAPI schema with each role's token (and none): no 5xx, no
response outside the schema, whatever the input.

All of schemathesis's checks run except ``positive_data_acceptance``: a schema-valid
body may still be a semantically invalid linkage spec, and refusing it with a 400 that
names the problem is the intended behaviour."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance
from schemathesis.transport.asgi import ASGI_TRANSPORT
from schemathesis.transport.requests import binary_serializer

from service.audit.denials import DenialGate
from tests.conftest import FUZZ_EXAMPLES
from tests.service_fixtures import Service

# uploads are sealed bytes (formerly raw Parquet): generate them as any binary body
ASGI_TRANSPORT.serializer("application/vnd.apache.parquet", "application/vnd.pprl.sealed")(
    binary_serializer
)


def test_no_server_errors_and_responses_conform(project_service: Service) -> None:
    s = project_service
    # the failed-authentication rate limit has its own tests (test_audit.py); here it
    # would turn the fuzzer's thousands of anonymous calls into 429s and hide the schema
    s.http.app.state.pprl.denials = DenialGate(failures_per_minute=1_000_000)  # type: ignore[attr-defined]
    # no worker signs here: an export would wait its full checkpoint wait for nothing
    s.settings.checkpoint_wait_seconds = 0.2
    schema = schemathesis.openapi.from_asgi("/openapi.json", s.http.app)
    tokens = [s.admin, s.tokens["housing"], s.tokens["analyst"], s.tokens["dpo"], None]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        _fuzz(operation, tokens)
    assert s.http.get("/healthz").status_code == 200


def _fuzz(operation: object, tokens: list[str | None]) -> None:
    @given(data=st.data())
    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def fuzz(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy())  # type: ignore[attr-defined]
        for token in tokens:
            case.call_and_validate(
                headers={"Authorization": f"Bearer {token}"} if token else {},
                excluded_checks=[positive_data_acceptance],
            )

    fuzz()
