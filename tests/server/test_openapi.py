"""The OpenAPI document: valid OpenAPI 3.1, served at /api/openapi.json, and in step with the app's routes.

A route added to the app without an operation in haco/server/openapi.py fails
`test_every_route_is_documented`; an operation whose route went away fails the other direction.
"""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate
from openapi_spec_validator.validation.validators import OpenAPIV31SpecValidator

from haco.server.auth import ROUTE_RULES
from haco.server.openapi import document, operations


def _app_routes(client: TestClient) -> set[tuple[str, str]]:
    return {(r.method, r.resource.canonical) for r in client.app.router.routes()  # type: ignore[union-attr]
            if r.method != "HEAD" and r.resource is not None}


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1")
    validate(doc, cls=OpenAPIV31SpecValidator)


async def test_it_is_served_without_a_token_and_matches(client: TestClient) -> None:
    r = await client.get("/api/openapi.json")
    assert r.status == 200 and r.content_type == "application/json"
    assert await r.json() == document()


def test_every_route_is_documented_and_every_operation_is_a_route(client: TestClient) -> None:
    routes, documented = _app_routes(client), operations()
    assert len(routes) > 30, routes
    assert routes - documented == set(), f"routes missing from haco/server/openapi.py: {sorted(routes - documented)}"
    assert documented - routes == set(), f"documented operations with no route: {sorted(documented - routes)}"


def test_each_operation_names_the_role_auth_requires() -> None:
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            assert operation["x-role"] == ROUTE_RULES.get((method.upper(), path), "read"), (method, path)
            assert ("security" in operation) == (operation["x-role"] == "open"), (method, path)


def test_every_error_answer_has_the_error_shape_and_its_codes() -> None:
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) < 400 or path.startswith("/api/health/"):
                    continue
                schema: Any = response["content"]["application/json"]["schema"]
                assert schema["allOf"][0] == {"$ref": "#/components/schemas/Error"}, (method, path, status)
                codes = schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]
                assert codes and all(c.isupper() for c in codes), (method, path, status, codes)


def test_every_link_targets_an_operation_with_the_parameters_it_fills() -> None:
    doc = document()
    by_id = {operation["operationId"]: operation for item in doc["paths"].values() for operation in item.values()}
    links = [(path, method, name, link) for path, item in doc["paths"].items() for method, operation in item.items()
             for status, response in operation["responses"].items() if status.startswith("2")
             for name, link in response.get("links", {}).items()]
    assert {name for *_, name, _ in links} >= {"GetJob", "CancelJob", "RetryJob", "JobLogs", "DrainWorker",
                                                 "UndrainWorker"}
    for path, method, name, link in links:
        target = by_id.get(link["operationId"])
        assert target is not None, (method, path, name, link["operationId"])
        takes = {f"{p['in']}.{p['name']}" for p in target.get("parameters", [])}
        assert set(link.get("parameters", {})) <= takes, (method, path, name)
        assert ("requestBody" in link) <= ("requestBody" in target), (method, path, name)
        for expression in [*link.get("parameters", {}).values(), *link.get("requestBody", {}).get("job_ids", [])]:
            assert expression.startswith("$response.body#/"), (method, path, name, expression)

