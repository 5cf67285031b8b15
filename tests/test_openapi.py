"""The API document: made from the routes, committed, served without a key, and read by Swagger UI."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import httpx

from taskrun.local.openapi import PAGES, SNAPSHOT, document, render
from taskrun.local.template import Stack
from tests.browser import needs_chromium, open_browser
from tests.conftest import ROOT

METHODS = {"get", "post", "patch", "delete", "put"}


def test_the_committed_document_is_the_one_the_routes_make() -> None:
    made = render(document(ROOT))
    committed = (ROOT / SNAPSHOT).read_text()
    assert committed == made, "docs/openapi.json is stale: run `taskrun openapi` and commit it"


def test_the_docs_function_ships_the_committed_document() -> None:
    shipped = ROOT / "functions" / "docs" / "openapi.json"
    assert json.loads(shipped.read_text()) == json.loads((ROOT / SNAPSHOT).read_text())


def test_every_route_is_documented_with_its_answers_and_problems(anonymous: httpx.Client) -> None:
    served = anonymous.get("/v1/openapi.json")
    assert served.status_code == 200 and served.headers["content-type"].startswith("application/json")
    doc = served.json()
    assert doc["openapi"].startswith("3.1")
    assert doc["servers"] == [{"url": "/"}]  # the local stack is served at its root
    assert {key: value for key, value in doc.items() if key != "servers"} == {
        key: value for key, value in json.loads((ROOT / SNAPSHOT).read_text()).items() if key != "servers"
    }
    routes = Stack(ROOT / "template.yaml", "us-east-1").routes()
    expected = {(r.method.lower(), r.path.replace("+}", "}")) for r in routes} - PAGES
    documented = {(method, path) for path, item in doc["paths"].items() for method in item if method in METHODS}
    assert documented == expected
    open_routes = {(r.method.lower(), r.path) for r in routes if not r.authorized}
    assert doc["components"]["securitySchemes"] == {
        "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-KEY", "description": "An API key"},
        "Bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "The same API key, as `Authorization: Bearer <key>`",
        },
    }
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            assert operation["summary"] and not operation["summary"].startswith(method.upper()), where
            success = [code for code in operation["responses"] if code.startswith("2")]
            assert success, where
            for code, answer in operation["responses"].items():
                if code.startswith("2") and code != "204":
                    assert "$ref" in answer["content"]["application/json"]["schema"], where
                if code[0] in "45":
                    assert answer["content"] == {
                        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                    }, where
            if (method, path) in open_routes:
                assert operation["security"] == [], where
            else:
                # either key header, with the scope the route needs (OpenAPI 3.1's roles)
                scope = operation["security"][0]["ApiKey"][0]
                assert operation["security"] == [{"ApiKey": [scope]}, {"Bearer": [scope]}], where
                assert scope in {"runs:write", "runs:read", "schedules:write", "schedules:read", "admin"}, where
                assert f"Scope: `{scope}`" in operation["description"], where
                assert "403" in operation["responses"], where
                assert {"401", "429", "500"} <= set(operation["responses"]), where
            if "requestBody" in operation:
                assert {"400", "415", "422"} & set(operation["responses"]), where
    assert doc["security"] == [{"ApiKey": []}, {"Bearer": []}]
    schemas = doc["components"]["schemas"]
    assert schemas["StartRunRequest"]["examples"][0]["task_id"] == "examples/greet"
    assert schemas["RunView"]["examples"][0]["status"] == "succeeded"
    assert schemas["Problem"]["examples"][0]["status"] == 422
    assert "HTTPValidationError" not in schemas
    start = doc["paths"]["/v1/runs"]["post"]
    assert {p["name"] for p in start["parameters"]} == {"wait", "wait_timeout", "Idempotency-Key"}
    assert set(start["responses"]) >= {"200", "201", "404", "409", "413", "422"}


def test_swagger_ui_is_a_page_without_a_key(anonymous: httpx.Client) -> None:
    page = anonymous.get("/v1/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>taskrun API</title>" in page.text and "SwaggerUIBundle" in page.text


def test_swagger_ui_comes_with_a_content_policy_that_runs_only_its_own_scripts(anonymous: httpx.Client) -> None:
    # When the Swagger UI page is fetched
    page = anonymous.get("/v1/docs")
    # Then no other site may frame it
    assert page.headers["X-Frame-Options"] == "DENY"
    policy = dict(directive.partition(" ")[::2] for directive in page.headers["Content-Security-Policy"].split("; "))
    assert policy["frame-ancestors"] == "'none'" and policy["default-src"] == "'none'"
    assert policy["base-uri"] == "'none'" and policy["form-action"] == "'none'"
    # and the scripts that run are the page's own inline ones, each named by its digest, and no others
    inline = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
    digests = {"'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'" for s in inline}
    assert len(inline) == 2 and set(policy["script-src"].split()) == digests
    # and it calls only the API it came from
    assert policy["connect-src"] == "'self'"


@needs_chromium
def test_swagger_ui_loads_in_a_browser_and_calls_the_api(base_url: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import WebDriverWait

    browser = open_browser(tmp_path / "profile")
    try:
        browser.get(f"{base_url}/v1/docs")
        wait = WebDriverWait(browser, 30)
        wait.until(shown.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))
        # Given the page as a person sees it: the API's title and every operation
        assert "taskrun" in browser.find_element(By.CSS_SELECTOR, ".info .title").text
        operations = browser.find_elements(By.CSS_SELECTOR, ".opblock")
        doc = httpx.get(f"{base_url}/v1/openapi.json").json()
        assert len(operations) == sum(len(item) for item in doc["paths"].values())
        assert browser.find_elements(By.CSS_SELECTOR, ".btn.authorize")  # the key headers can be entered
        # When the health operation is tried out
        health = browser.find_element(By.ID, "operations-service-health")
        health.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
        wait.until(lambda _: health.find_element(By.CSS_SELECTOR, ".try-out__btn")).click()
        wait.until(lambda _: health.find_element(By.CSS_SELECTOR, ".execute")).click()
        # Then the page shows the API's own answer
        answer = wait.until(lambda _: health.find_element(By.CSS_SELECTOR, ".live-responses-table tbody .response"))
        assert answer.find_element(By.CSS_SELECTOR, ".response-col_status").text.strip() == "200"
        assert '"status": "ok"' in answer.find_element(By.CSS_SELECTOR, ".microlight").text
    finally:
        browser.quit()


def test_no_two_models_of_the_api_share_a_name() -> None:
    """The document names each schema after its model's class: two models of one name would
    leave one of them documented as the other."""
    import importlib
    import inspect

    from pydantic import BaseModel

    modules = [
        "models",
        "requests",
        "events",
        "catalog.info",
        "webhooks.records",
        "schedules.models",
        "flows.stepfunctions",
        "flows.callbacks",
        "results.files",
        "results.tasklogs",
        "access.keys",
        "api",
    ]
    owners: dict[str, list[str]] = {}
    for name in modules:
        module = importlib.import_module(f"taskrun.{name}")
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseModel) and cls.__module__ == module.__name__:
                owners.setdefault(cls_name, []).append(module.__name__)
    assert {name: places for name, places in owners.items() if len(places) > 1} == {}


def test_the_document_link_swagger_ui_shows_answers_the_document(anonymous: httpx.Client) -> None:
    # Swagger UI shows its document's address as /v1/docs?format=json
    linked = anonymous.get("/v1/docs", params={"format": "json"})
    assert linked.status_code == 200 and linked.headers["content-type"].startswith("application/json")
    assert linked.json()["paths"] == anonymous.get("/v1/openapi.json").json()["paths"]
    assert anonymous.get("/v1/docs").headers["content-type"].startswith("text/html")
