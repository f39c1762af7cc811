"""A dashboard that needs a login, in front of a platform that checks tokens: logging in with a
platform token or a name and password, the session cookie, CSRF tokens on actions, viewer and admin
roles, logout and revocation, the Host allow-list, and refusing to serve beyond loopback without a login."""

from __future__ import annotations

import importlib.util
import os
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import jwt
import pytest

import tasktide
from tasktide import ClientSettings
from tasktide_services.common.auth import mint
from tasktide_services.common.redis_server import free_port
from tasktide_services.common.settings import ServerSettings
from tasktide_services.dashboard.credentials import TokenHooks, static
from tasktide_services.dashboard.users import Users, hash_password
from tasktide_services.testing import PlatformThread, spawn
from tests.conftest import ROOT
from tests.test_dashboard import Web, chromium_dom, until

KEY = b"d" * 40
PASSWORDS = {"ada": "ada's long passphrase", "vic": "vic reads only"}


@dataclass
class Site:
    base: str
    platform: PlatformThread
    revoked: Path

    def web(self) -> Web:
        return Web(self.base)

    def token(self, role: str, **kw: object) -> str:
        return mint(KEY, namespace="default", role=role, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def revoked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dash-auth") / "revoked"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def secured(server_settings: ServerSettings, revoked: Path) -> Iterator[PlatformThread]:
    with PlatformThread(replace(server_settings, auth_key=KEY.decode(), auth_revoked=str(revoked))) as p:
        yield p


def start_dashboard(
    *args: str, env: dict[str, str] | None = None, tls: ssl.SSLContext | None = None
) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = spawn(
        "dashboard", "--listen", f"127.0.0.1:{port}", *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    base = f"{'https' if tls else 'http'}://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            return Web(base, tls).raw("GET", "/login")[0] == 200
        except OSError:
            return False

    until(up, timeout=20)
    return proc, base


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="module")
def site(secured: PlatformThread, revoked: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    users = tmp_path_factory.mktemp("dash-users") / "users"
    users.write_text(
        "# dashboard users\n"
        f"ada:admin:{hash_password(PASSWORDS['ada'])}\n"
        f"vic:viewer:{hash_password(PASSWORDS['vic'])}\n"
    )
    env = {"TASKTIDE_AUTH_KEY": KEY.decode(), "TASKTIDE_AUTH_REVOKED": str(revoked), "TASKTIDE_TOKEN": ""}
    proc, base = start_dashboard("--address", secured.address, "--users", str(users), env=env)
    try:
        yield Site(base, secured, revoked)
    finally:
        stop(proc)


def login_form(web: Web) -> str:
    """Opens the login page (as a browser would first) and returns its CSRF field."""
    status, _, page = web.raw("GET", "/login")
    assert status == 200 and 'name="csrf"' in page
    return page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def log_in(web: Web, **fields: str) -> tuple[int, str, str]:
    """(status, Location, page) of a login with `fields`."""
    status, headers, page = web.form("/login", {"csrf": login_form(web), "next": "/schedules", **fields})
    return status, headers.get("location", ""), page


def test_without_a_session_pages_redirect_to_the_login_and_the_api_answers_401(site: Site) -> None:
    web = site.web()
    status, headers, _ = web.raw("GET", "/tasks/abc?x=1")
    assert status == 303 and headers["location"] == "/login?next=%2Ftasks%2Fabc%3Fx%3D1"
    assert web.json("GET", "/api/overview")[0] == 401
    assert web.json("POST", "/api/queues/q/pause", {})[0] == 401


def test_bad_tokens_and_passwords_are_refused(site: Site) -> None:
    web = site.web()
    other_key = mint(b"x" * 40, namespace="default", role="admin")
    for fields in (
        {"token": "not-a-token"},
        {"token": other_key},
        {"token": site.token("admin", ttl_seconds=1, now=1_000_000)},
        {"username": "ada", "password": "wrong"},
        {"username": "nobody", "password": PASSWORDS["ada"]},
        {"username": "ada", "password": ""},
    ):
        status, location, page = log_in(web, **fields)
        assert (status, location) == (401, ""), fields
        assert "login refused" in page, fields
        assert web.json("GET", "/api/overview")[0] == 401
    status, _, page = log_in(web, token=mint(KEY, namespace="other", role="admin"))
    assert status == 401 and "namespace" in page
    # the form's CSRF token is needed too (a page of another site cannot log a visitor in)
    status, _, page = web.form("/login", {"token": site.token("admin")})
    assert status == 403 and web.json("GET", "/api/overview")[0] == 401


def test_admin_token_login_sets_a_strict_cookie_and_acts_only_with_the_csrf_token(site: Site) -> None:
    web = site.web()
    status, headers, _ = web.form(
        "/login", {"csrf": login_form(web), "next": "/schedules", "token": site.token("admin")}
    )
    assert (status, headers["location"]) == (303, "/schedules")
    cookie = headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    # the dashboard's own calls to the platform carry its token: the platform checks tokens
    status, body = web.json("GET", "/api/overview")
    assert status == 200, body
    assert web.json("GET", "/api/session")[1]["role"] == "admin"

    q = f"dash-{uuid.uuid4().hex[:8]}"
    assert web.json("POST", f"/api/queues/{q}/pause", {})[0] == 403
    assert web.json("POST", f"/api/queues/{q}/pause", {}, csrf="forged")[0] == 403
    admin = TokenHooks(static(site.token("admin")))
    with tasktide.Client(settings=ClientSettings.from_env({}, address=site.platform.address), hooks=admin) as c:
        assert q not in [s.queue for s in c.queue_stats()]
        assert web.act(f"/api/queues/{q}/pause") == (200, {"queue": q, "paused": True})
        assert [s.paused for s in c.queue_stats() if s.queue == q] == [True]


def test_after_the_login_only_a_path_of_the_dashboard_is_followed(site: Site) -> None:
    for target, expected in (
        ("/dead/q1", "/dead/q1"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/\t/evil.example", "/"),
    ):
        web = site.web()
        status, headers, _ = web.form(
            "/login", {"csrf": login_form(web), "next": target, "username": "vic", "password": PASSWORDS["vic"]}
        )
        assert (status, headers["location"]) == (303, expected), target


def test_a_viewer_reads_but_cannot_act(site: Site) -> None:
    for fields in ({"token": site.token("producer")}, {"username": "vic", "password": PASSWORDS["vic"]}):
        web = site.web()
        assert log_in(web, **fields)[:2] == (303, "/schedules"), fields
        assert web.json("GET", "/api/overview")[0] == 200
        assert web.json("GET", "/api/session")[1]["role"] == "viewer"
        status, body = web.act(f"/api/queues/dash-{uuid.uuid4().hex[:8]}/pause")
        assert status == 403 and "may only read" in body["error"], body


def test_password_login_of_an_admin_acts(site: Site) -> None:
    web = site.web()
    assert log_in(web, username="ada", password=PASSWORDS["ada"])[:2] == (303, "/schedules")
    q = f"dash-{uuid.uuid4().hex[:8]}"
    assert web.act(f"/api/queues/{q}/resume") == (200, {"queue": q, "paused": False})


def test_logout_ends_the_session_even_for_a_copy_of_its_cookie(site: Site) -> None:
    web = site.web()
    assert log_in(web, username="ada", password=PASSWORDS["ada"])[0] == 303
    copy = site.web()
    for cookie in web.jar:
        copy.jar.set_cookie(cookie)
    assert copy.json("GET", "/api/overview")[0] == 200
    assert web.form("/logout", {"csrf": "forged"})[0] == 403
    assert web.form("/logout", {"csrf": web.csrf()})[:2][0] == 303
    assert web.json("GET", "/api/overview")[0] == 401
    assert copy.json("GET", "/api/overview")[0] == 401


def test_a_session_ends_with_its_token_and_when_the_token_is_revoked(site: Site) -> None:
    web = site.web()
    token = site.token("admin")
    assert log_in(web, token=token)[0] == 303
    assert web.json("GET", "/api/overview")[0] == 200
    jti = tasktide_jti(token)
    site.revoked.write_text(f"{jti}\n")
    try:
        until(lambda: web.json("GET", "/api/overview")[0] == 401)
    finally:
        site.revoked.write_text("")

    short = site.web()
    assert log_in(short, token=site.token("admin", ttl_seconds=2))[0] == 303
    assert short.json("GET", "/api/overview")[0] == 200
    until(lambda: short.json("GET", "/api/overview")[0] == 401)


def tasktide_jti(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


def test_a_host_not_allowed_gets_400(site: Site) -> None:
    web = site.web()
    assert web.raw("GET", "/login", headers={"Host": "evil.example"})[0] == 400
    assert web.raw("GET", "/login", headers={"Host": "localhost"})[0] == 200
    assert log_in(web, username="ada", password=PASSWORDS["ada"])[0] == 303
    assert (
        web.raw("POST", "/api/queues/q/pause", b"{}", {"Host": "evil.example:80", "x-tasktide-csrf": web.csrf()})[0]
        == 400
    )


def test_chromium_without_a_session_lands_on_the_login(site: Site, tmp_path: Path) -> None:
    dom = chromium_dom(f"{site.base}/schedules", tmp_path, lambda d: 'id="token-login"' in d)
    assert 'id="token-login"' in dom and 'id="password-login"' in dom, dom[-3000:]
    assert 'name="next" value="/schedules"' in dom
    assert 'id="schedules"' not in dom


def test_over_https_the_cookie_is_secure(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("dev_certs", ROOT / "scripts" / "dev_certs.py")
    assert spec is not None and spec.loader is not None
    dev_certs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dev_certs)
    certs = dev_certs.make(tmp_path / "tls", ["localhost", "127.0.0.1"])
    users = tmp_path / "users"
    users.write_text(f"ada:admin:{hash_password(PASSWORDS['ada'])}\n")
    tls = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    args = ("--users", str(users), "--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server-key.pem"))
    proc, base = start_dashboard(*args, env={"TASKTIDE_AUTH_KEY": ""}, tls=tls)
    try:
        web = Web(base, tls)
        fields = {"csrf": login_form(web), "next": "/schedules", "username": "ada", "password": PASSWORDS["ada"]}
        status, headers, _ = web.form("/login", fields)
        assert (status, headers["location"]) == (303, "/schedules")
        cookie = headers["set-cookie"].lower()
        assert "; secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    finally:
        stop(proc)


def test_repeated_failed_logins_from_one_address_must_wait(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text(f"ada:admin:{hash_password(PASSWORDS['ada'])}\n")
    proc, base = start_dashboard("--users", str(users), env={"TASKTIDE_AUTH_KEY": ""})
    try:
        web = Web(base)
        statuses = [log_in(web, username="ada", password=f"guess {i}")[0] for i in range(10)]
        assert statuses == [401] * 10
        status, _, page = log_in(web, username="ada", password=PASSWORDS["ada"])
        assert status == 429 and "too many failed logins" in page
        assert web.json("GET", "/api/overview")[0] == 401
    finally:
        stop(proc)


def test_no_login_beyond_loopback_refuses_to_start(tmp_path: Path) -> None:
    port = free_port()
    env = {"TASKTIDE_AUTH_KEY": "", "TASKTIDE_DASHBOARD_USERS": ""}
    out = subprocess.run(
        [sys.executable, "-m", "tasktide.cli", "dashboard", "--listen", f"0.0.0.0:{port}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert out.returncode == 2 and "refusing to serve" in out.stderr and "--insecure" in out.stderr


def test_hash_password_prints_a_users_line_that_logs_in(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tasktide.cli", "dashboard", "hash-password", "eve", "--role", "admin"],
        input="eve's secret\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    path = tmp_path / "users"
    path.write_text(out.stdout)
    users = Users.load(str(path))
    assert users.check("eve", "eve's secret") is not None and users.check("eve", "other") is None
    assert out.stdout.startswith("eve:admin:scrypt$")
