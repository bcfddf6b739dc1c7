"""A strict Content-Security-Policy on every page: scripts only from our own files or with the
response's nonce, never 'unsafe-inline' (issue 15, item 12)."""

import re
import shutil
from pathlib import Path

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from tests.access.factories import login_verified
from tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.IGNORECASE)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def directives(header: str) -> dict[str, list[str]]:
    parsed = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            parsed[words[0]] = words[1:]
    return parsed


def plain_get_urls(resolver=None, prefix=""):
    """Every URL of the site that takes no arguments (admin excluded: it has its own tests)."""
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern)
        if "<" in route or "(?P" in route or route.startswith("admin/"):
            continue
        if isinstance(pattern, URLResolver):
            yield from plain_get_urls(pattern, route)
        elif isinstance(pattern, URLPattern):
            yield "/" + route.lstrip("^").rstrip("$")


def assert_strict(response):
    assert "Content-Security-Policy" in response, response.request["PATH_INFO"]
    policy = directives(response["Content-Security-Policy"])
    script = policy.get("script-src", policy.get("default-src"))
    assert "'unsafe-inline'" not in script and "'unsafe-eval'" not in script
    assert "*" not in script and "data:" not in script and "https:" not in script
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    return policy


def assert_scripts_allowed(response, policy):
    """Every script on the page is a file of our own or carries this response's nonce."""
    html = response.content.decode()
    nonces = {word[len("'nonce-"):-1] for word in policy.get("script-src", []) if word.startswith("'nonce-")}
    for attributes in SCRIPT_TAG.findall(html):
        if "src=" in attributes:
            assert re.search(r'src="/[^/]', attributes), attributes  # our own origin
            continue
        nonce = re.search(r'nonce="([^"]+)"', attributes)
        assert nonce and nonce.group(1) in nonces, f"inline script without this response's nonce on {response.request['PATH_INFO']}"


@pytest.mark.parametrize("who", ["anonymous", "researcher", "staff"])
def test_every_page_sends_a_strict_policy(client, who):
    if who == "researcher":
        client.force_login(UserFactory())
    elif who == "staff":
        login_verified(client, StaffFactory(is_superuser=True))
    urls = sorted(set(plain_get_urls()))
    assert {"/", "/accounts/login/", "/access/", "/review/", "/audit/", "/api/docs/", "/api/v1/me"} <= set(urls)
    for url in urls:
        response = client.get(url)
        policy = assert_strict(response)
        if response.get("Content-Type", "").startswith("text/html"):
            assert_scripts_allowed(response, policy)


def test_admin_pages_send_it_too(client):
    login_verified(client, StaffFactory(is_superuser=True))
    for url in ("/admin/", "/admin/access/tier/", "/admin/access/tier/add/"):
        response = client.get(url)
        assert response.status_code == 200
        assert_scripts_allowed(response, assert_strict(response))


def test_error_pages_and_redirects_send_it_too(client):
    assert_strict(client.get("/no-such-page/"))
    assert_strict(client.get("/access/"))  # a redirect to the login page


def test_the_api_docs_inline_script_carries_the_nonce(client):
    response = client.get("/api/docs/")
    policy = assert_strict(response)
    nonce = [w for w in policy["script-src"] if w.startswith("'nonce-")]
    assert len(nonce) == 1
    assert f'<script nonce="{nonce[0][7:-1]}">' in response.content.decode()


def test_each_response_gets_a_fresh_nonce(client):
    first = directives(client.get("/api/docs/")["Content-Security-Policy"])["script-src"]
    second = directives(client.get("/api/docs/")["Content-Security-Policy"])["script-src"]
    assert first != second


def test_no_template_has_an_inline_script_without_the_nonce():
    """Inline scripts are allowed only with nonce="{{ request.csp_nonce }}"; without it the
    browser refuses them and the page silently stops updating."""
    offenders = []
    for template in sorted(TEMPLATES.rglob("*.html")):
        for attributes in SCRIPT_TAG.findall(template.read_text()):
            if "src=" not in attributes and 'nonce="{{ request.csp_nonce }}"' not in attributes:
                offenders.append(str(template.relative_to(TEMPLATES)))
    assert offenders == []


@pytest.mark.slow
def test_pages_run_in_a_browser_without_policy_violations(live_server):
    playwright = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip("chromium is not installed (bash scripts/install_system_deps.sh)")
    violations = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_context().new_page()
            page.on("console", lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None)
            for path in ("/", "/accounts/login/", "/accounts/register/"):
                page.goto(live_server.url + path)
            page.goto(live_server.url + "/api/docs/")
            page.wait_for_selector(".opblock", timeout=20_000)  # Swagger UI ran and rendered the operations
            assert "/api/v1/whoami" in page.inner_text("#swagger-ui")
            # An injected inline script is refused: the policy is in force, not just sent.
            page.goto(live_server.url + "/")
            page.evaluate("""() => { const s = document.createElement('script'); s.textContent = 'window.__ran = 1'; document.body.appendChild(s); }""")
            assert page.evaluate("() => window.__ran === undefined")
        finally:
            browser.close()
    injected = [v for v in violations if "inline" in v]
    assert len(injected) == 1 and len(violations) == 1, violations
