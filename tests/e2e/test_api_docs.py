"""The API docs in the browser: Swagger UI starts under the site's strict Content-Security-Policy
(script-src 'self', no inline script) and lists the operations, the routers' feed among them."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.e2e.test_model_approval import sign_in
from tests.e2e.watch import watch


def test_api_docs_list_the_operations_under_the_strict_csp(page: Page, live_server, dave, screenshot) -> None:
    errors: list[str] = []
    watch(page, errors)
    sign_in(page, live_server.url, "dave")
    response = page.goto(f"{live_server.url}/api/docs/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]

    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Steward API")
    for method, path in [
        ("GET", "/api/v1/policy-sets/{slug}/bundle"),
        ("POST", "/api/v1/policy-sets/{slug}/status"),
        ("GET", "/api/v1/trust/root.json"),
        ("POST", "/api/v1/decisions"),
        ("GET", "/api/v1/audit/checkpoints"),
        ("POST", "/api/v1/evaluation-runs/"),
        ("GET", "/api/v1/model-versions/"),
    ]:
        block = page.locator(".opblock", has=page.locator(".opblock-summary-path", has_text=path)).filter(
            has=page.locator(".opblock-summary-method", has_text=method)
        )
        expect(block.first).to_be_visible()
    # The two ways in: personal API tokens and router tokens.
    page.get_by_role("button", name="Authorize").click()
    expect(page.locator(".auth-container h4", has_text="bearerAuth")).to_be_visible()
    expect(page.locator(".auth-container h4", has_text="routerToken")).to_be_visible()
    screenshot(page, "api-docs")
    assert errors == []
