"""Property-based checks of the whole OpenAPI schema (schemathesis): generated valid and
invalid requests, with an admin key, must never get a 5xx, and responses must match the
documented status codes, content types and schemas. Bounded: 20 examples per operation.
The live stream is left out (an endless response), covered by test_alerts_stream.py."""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                 status_code_conformance)

from api.main import create_app
from core.settings import Settings
from tests.api.conftest import event, insert_alert, make_key, seed

pytestmark = pytest.mark.slow
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def admin_key(dsn) -> str:
    seed(dsn, [event(i, source="st") for i in range(20)])
    insert_alert(dsn, key="ST", samples=("st/e1",))
    return make_key(dsn, "admin")


# The schema is the app's own (built without a database); requests go to the served app.
# (schemathesis.pytest.from_fixture does not work with pytest 9.)
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi()).exclude(path_regex="^/v1/stream/")


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_schema(case, api, admin_key):
    # sent with requests directly: schemathesis' own transport trips over urllib3 2.8's pool internals
    kwargs = case.as_transport_kwargs(base_url=api.url, headers={"X-API-Key": admin_key})
    response = requests.request(**kwargs, timeout=30, allow_redirects=False)
    case.validate_response(response, checks=CHECKS)
