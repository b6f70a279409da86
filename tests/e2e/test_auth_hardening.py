"""The outside attack review of identity, replayed against a real `arcana serve` process.

Each test reproduces one attack: memory growth through the failed-login
tracker, access tokens that outlive logout / disable / delete / demotion /
password change, gRPC logins that store a session after the caller gave up,
a double-submitted refresh that logged the client out, control characters in
emails, and the last admin locking everyone out.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml

from conftest import ROOT
from e2e.grpc_support import generate_stubs
from e2e.server import ArcanaServer, admin_headers
from e2e.test_auth import PASSWORD, _folder, bearer, create_user, login

ADMIN_USERS = "/api/v1/admin/users"
ANY_USER_ROUTE = "/api/v1/guarded/any/1"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fixture_wasm: dict[str, Path]) -> Iterator[ArcanaServer]:
    work = tmp_path_factory.mktemp("hardening")
    srv = ArcanaServer(_folder(work, fixture_wasm), work, {"auth": {"dev": False}}).start()
    create_user(srv, "keeper@example.com", ["admin"])  # so the admins these tests remove are never the last one
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def auth_stubs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    return generate_stubs(ROOT / "proto" / "arcana" / "auth" / "v1" / "auth.proto", tmp_path_factory.mktemp("stubs"))


def rss_kib(server: ArcanaServer) -> int:
    """The server process's resident set (VmRSS), from /proc."""
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS line")


def database_file(server: ArcanaServer) -> Path:
    url = yaml.safe_load(server.config_path.read_text())["database"]["url"]
    return Path(url.removeprefix("sqlite:///"))


def refresh_rows(server: ArcanaServer, user_id: str) -> int:
    with sqlite3.connect(database_file(server)) as db:
        return int(db.execute("SELECT count(*) FROM auth_refresh_tokens WHERE user_id = ?", (user_id,)).fetchone()[0])


def grpc_call_status(server: ArcanaServer, token: str) -> grpc.StatusCode:
    """Call the guarded plugin's admin-only gRPC method with a bearer token; the status the server answered."""
    with grpc.insecure_channel(server.grpc_address) as channel:
        call = channel.unary_unary(
            "/inspect.v1.Inspect/Envelope", request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        try:
            call(b"", metadata=(("authorization", f"Bearer {token}"),), timeout=30)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def rest_status(server: ArcanaServer, token: str, path: str = ANY_USER_ROUTE) -> int:
    if path == ANY_USER_ROUTE:
        return httpx.post(f"{server.url}{path}", json={}, headers=bearer(token)).status_code
    return httpx.get(f"{server.url}{path}", headers=bearer(token)).status_code


def signed_in_admin(server: ArcanaServer, email: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A database admin and a token pair of theirs, checked to work over both edges."""
    user = create_user(server, email, ["admin"])
    pair = login(server, email).json()
    assert rest_status(server, pair["access_token"], ADMIN_USERS) == 200
    assert grpc_call_status(server, pair["access_token"]) == grpc.StatusCode.OK
    return user, pair


def patch_user(server: ArcanaServer, user_id: str, changes: dict[str, Any], token: str | None = None) -> httpx.Response:
    headers = bearer(token) if token else admin_headers()
    return httpx.patch(f"{server.url}{ADMIN_USERS}/{user_id}", json=changes, headers=headers)


# ---- 1. the failed-login tracker and over-long emails


def test_an_over_long_email_is_refused_with_400_before_any_password_check(server: ArcanaServer) -> None:
    longest = "a" * 64 + "@" + "b" * 185 + ".com"  # 254 characters: RFC 5321's limit, still a plain failure
    assert len(longest) == 254 and login(server, longest).status_code == 401
    for email in (longest[:-4] + "x.com", "x" * 1_000_000 + "@example.com"):
        r = login(server, email)
        assert r.status_code == 400 and r.json()["code"] == "VALIDATION_FAILED", r.text[:200]
        assert "254" in r.json()["message"]


def test_huge_and_many_distinct_failed_logins_leave_the_server_small_and_answering(
    tmp_path: Path, fixture_wasm: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    """Before: 200 logins with a 1 MB email kept ~207 MB for good. Now: 400, and the tracker holds 500 keys at most."""
    server = start_server(
        _folder(tmp_path, fixture_wasm),
        {
            "auth": {
                "login_failures_per_address": 1_000_000,  # every attempt from 127.0.0.1 must reach the tracker
                "login_tracker_max_keys": 500,
                "argon2_time_cost": 1,
                "argon2_memory_kib": 1024,
            }
        },
    )
    client = httpx.Client(base_url=server.url, timeout=30)

    def huge(n: int) -> dict[str, str]:
        return {"email": f"{n:07d}" + "x" * 1_000_000 + "@example.com", "password": "guess"}  # distinct, 1 MB each

    def spray(count: int, prefix: str) -> None:
        for i in range(count):
            email = f"{prefix}{i:06d}".ljust(64, "z") + "@" + "d" * 185 + ".com"
            assert client.post("/api/v1/auth/login", json={"email": email, "password": "guess"}).status_code == 401
        assert client.get("/health").status_code == 200

    for n in range(5):  # warm the allocator and the JSON path before the baseline
        client.post("/api/v1/auth/login", json=huge(n))
    spray(100, "warm")
    baseline = rss_kib(server)
    for round_ in range(4):
        for n in range(50):
            r = client.post("/api/v1/auth/login", json=huge(1000 * (round_ + 1) + n))
            assert r.status_code == 400
        spray(300, f"r{round_}-")  # 1,200 distinct accounts in all: more than twice the tracker's bound
    grown_mib = (rss_kib(server) - baseline) / 1024
    client.close()
    # 200 retained 1 MB keys alone would be 200 MB; the bounded tracker is well under 1 MB here.
    assert grown_mib < 32, f"the server grew by {grown_mib:.0f} MiB"


# ---- 2. access tokens are revoked on the next request


def test_a_deleted_users_access_token_is_refused_on_the_next_request(server: ArcanaServer) -> None:
    user, pair = signed_in_admin(server, "deleted@example.com")
    assert httpx.delete(f"{server.url}{ADMIN_USERS}/{user['id']}", headers=admin_headers()).status_code == 204
    r = httpx.post(f"{server.url}{ANY_USER_ROUTE}", json={}, headers=bearer(pair["access_token"]))
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED" and "revoked" in r.json()["message"]
    assert grpc_call_status(server, pair["access_token"]) == grpc.StatusCode.UNAUTHENTICATED


def test_a_disabled_users_access_token_is_refused_on_the_next_request(server: ArcanaServer) -> None:
    user, pair = signed_in_admin(server, "disabled@example.com")
    assert patch_user(server, user["id"], {"disabled": True}).status_code == 200
    assert rest_status(server, pair["access_token"]) == 401
    assert grpc_call_status(server, pair["access_token"]) == grpc.StatusCode.UNAUTHENTICATED
    # Enabling the account again does not bring the old token back; a new login works at once.
    assert patch_user(server, user["id"], {"disabled": False}).status_code == 200
    assert rest_status(server, pair["access_token"]) == 401
    assert rest_status(server, login(server, "disabled@example.com").json()["access_token"]) == 200


def test_a_demoted_admin_is_refused_at_once_and_a_refresh_carries_the_new_roles(server: ArcanaServer) -> None:
    """Role changes revoke the tokens issued before them (401); the refresh family survives, with the new roles."""
    user, pair = signed_in_admin(server, "demoted@example.com")
    assert patch_user(server, user["id"], {"roles": ["user"]}).status_code == 200
    assert rest_status(server, pair["access_token"], ADMIN_USERS) == 401
    assert grpc_call_status(server, pair["access_token"]) == grpc.StatusCode.UNAUTHENTICATED
    fresh = httpx.post(f"{server.url}/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).json()
    # Issued in the same second as the demotion, and accepted: revocation is not by clock alone.
    assert rest_status(server, fresh["access_token"]) == 200
    assert rest_status(server, fresh["access_token"], ADMIN_USERS) == 403
    assert grpc_call_status(server, fresh["access_token"]) == grpc.StatusCode.PERMISSION_DENIED


def test_a_password_change_revokes_access_and_refresh_tokens(server: ArcanaServer) -> None:
    user, pair = signed_in_admin(server, "newpass@example.com")
    assert patch_user(server, user["id"], {"password": "a brand new password"}).status_code == 200
    assert rest_status(server, pair["access_token"]) == 401
    assert grpc_call_status(server, pair["access_token"]) == grpc.StatusCode.UNAUTHENTICATED
    refresh = httpx.post(f"{server.url}/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refresh.status_code == 401
    fresh = login(server, "newpass@example.com", "a brand new password").json()
    assert rest_status(server, fresh["access_token"]) == 200


def test_rest_logout_revokes_the_access_tokens_issued_before_it(server: ArcanaServer) -> None:
    """Logout ends its refresh family and every access token issued before it; other devices refresh once."""
    create_user(server, "logout@example.com", ["user"])
    phone, laptop = login(server, "logout@example.com").json(), login(server, "logout@example.com").json()
    assert rest_status(server, phone["access_token"]) == 200
    r = httpx.post(f"{server.url}/api/v1/auth/logout", json={"refresh_token": phone["refresh_token"]})
    assert r.status_code == 204
    assert rest_status(server, phone["access_token"]) == 401 and rest_status(server, laptop["access_token"]) == 401
    url = f"{server.url}/api/v1/auth/refresh"
    assert httpx.post(url, json={"refresh_token": phone["refresh_token"]}).status_code == 401
    # The other device's session goes on: its refresh token still works, and the new access token is good.
    again = httpx.post(url, json={"refresh_token": laptop["refresh_token"]})
    assert again.status_code == 200 and rest_status(server, again.json()["access_token"]) == 200


def test_logout_everywhere_ends_every_session(server: ArcanaServer) -> None:
    create_user(server, "everywhere@example.com", ["user"])
    phone, laptop = login(server, "everywhere@example.com").json(), login(server, "everywhere@example.com").json()
    body = {"refresh_token": phone["refresh_token"], "everywhere": True}
    assert httpx.post(f"{server.url}/api/v1/auth/logout", json=body).status_code == 204
    for pair in (phone, laptop):
        assert rest_status(server, pair["access_token"]) == 401
        r = httpx.post(f"{server.url}/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert r.status_code == 401
    bad = {"refresh_token": laptop["refresh_token"], "everywhere": "yes"}
    assert httpx.post(f"{server.url}/api/v1/auth/logout", json=bad).status_code == 400


def test_grpc_logout_revokes_the_access_token(server: ArcanaServer, auth_stubs: tuple[Any, Any]) -> None:
    pb, stubs = auth_stubs
    create_user(server, "grpc-logout@example.com", ["admin"])
    with grpc.insecure_channel(server.grpc_address) as channel:
        auth = stubs.AuthServiceStub(channel)
        pair = auth.Login(pb.LoginRequest(email="grpc-logout@example.com", password=PASSWORD), timeout=30)
        assert grpc_call_status(server, pair.access_token) == grpc.StatusCode.OK
        auth.Logout(pb.LogoutRequest(refresh_token=pair.refresh_token), timeout=30)
    assert grpc_call_status(server, pair.access_token) == grpc.StatusCode.UNAUTHENTICATED
    assert rest_status(server, pair.access_token) == 401


def test_minted_tokens_of_subjects_the_kernel_never_revoked_still_work(server: ArcanaServer) -> None:
    """Tokens from an independent issuer (no user row, no epoch claim) are unaffected by revocation."""
    assert httpx.get(f"{server.url}{ADMIN_USERS}", headers=admin_headers()).status_code == 200


# ---- 3. a gRPC login past the caller's deadline stores nothing


def _wait_for_log(server: ArcanaServer, needle: str, count: int) -> None:
    """Until the server has logged `needle` `count` times (it finishes a login after the client gave up)."""
    for _ in range(1200):
        if server.logs().count(needle) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"the server never logged {needle!r} {count} times:\n{server.logs()[-3000:]}")


def test_a_grpc_login_that_outlives_the_callers_deadline_stores_no_refresh_token(
    tmp_path: Path,
    fixture_wasm: dict[str, Path],
    start_server: Callable[..., ArcanaServer],
    auth_stubs: tuple[Any, Any],
) -> None:
    pb, stubs = auth_stubs
    # About a second of Argon2 per login: far longer than the client's 0.2 s deadline below.
    server = start_server(_folder(tmp_path, fixture_wasm), {"auth": {"argon2_time_cost": 50}})
    user = create_user(server, "deadline@example.com", ["user"])
    timed_out = 0
    with grpc.insecure_channel(server.grpc_address) as channel:
        auth = stubs.AuthServiceStub(channel)
        for attempt in range(1, 4):
            with pytest.raises(grpc.RpcError) as info:
                auth.Login(pb.LoginRequest(email="deadline@example.com", password=PASSWORD), timeout=0.2)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            timed_out += 1
            # The server goes on verifying the password after the client left; wait until it has decided.
            _wait_for_log(server, "deadline@example.com", attempt)
        assert timed_out == 3 and refresh_rows(server, user["id"]) == 0
        assert server.logs().count('"reason": "deadline"') == 3  # and the server says why
        # The same login with time to spare stores exactly one session (so the count above can see one).
        pair = auth.Login(pb.LoginRequest(email="deadline@example.com", password=PASSWORD), timeout=60)
    assert pair.refresh_token and refresh_rows(server, user["id"]) == 1


# ---- 4. a double-submitted refresh within the grace window


def test_a_refresh_presented_again_within_the_grace_window_gets_a_working_pair(server: ArcanaServer) -> None:
    create_user(server, "double@example.com", ["user"])
    first = login(server, "double@example.com").json()["refresh_token"]
    url = f"{server.url}/api/v1/auth/refresh"
    one, two = (httpx.post(url, json={"refresh_token": first}) for _ in range(2))
    assert one.status_code == two.status_code == 200, two.text
    assert one.json()["refresh_token"] != two.json()["refresh_token"]
    for reply in (one, two):  # both successors live on, in the same family, and their access tokens work
        assert rest_status(server, reply.json()["access_token"]) == 200
        assert httpx.post(url, json={"refresh_token": reply.json()["refresh_token"]}).status_code == 200
    assert "auth.token_reuse_detected" not in server.logs()


def test_a_refresh_reused_after_the_grace_window_revokes_the_family(
    tmp_path: Path, fixture_wasm: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    server = start_server(_folder(tmp_path, fixture_wasm), {"auth": {"refresh_reuse_grace_s": 1}})
    create_user(server, "late@example.com", ["user"])
    first = login(server, "late@example.com").json()
    url = f"{server.url}/api/v1/auth/refresh"
    successor = httpx.post(url, json={"refresh_token": first["refresh_token"]}).json()
    time.sleep(1.5)  # past the grace window: this is a replay, not a double submit
    assert httpx.post(url, json={"refresh_token": first["refresh_token"]}).status_code == 401
    assert httpx.post(url, json={"refresh_token": successor["refresh_token"]}).status_code == 401
    assert rest_status(server, successor["access_token"]) == 401  # the thief's access tokens die too
    assert "auth.token_reuse_detected" in server.logs()


# ---- 5. control characters in emails; the last admin


CONTROL_EMAILS = ["nul\x00@example.com", "tab\t@example.com", "esc\x1b@example.com", "rlo\u202e@example.com"]


@pytest.mark.parametrize("bad", CONTROL_EMAILS)
def test_emails_with_control_characters_are_refused_with_400(server: ArcanaServer, bad: str) -> None:
    r = httpx.post(
        f"{server.url}{ADMIN_USERS}", json={"email": bad, "password": PASSWORD, "roles": []}, headers=admin_headers()
    )
    assert r.status_code == 400 and r.json()["code"] == "VALIDATION_FAILED", r.text
    r = login(server, bad)
    assert r.status_code == 400 and r.json()["code"] == "VALIDATION_FAILED", r.text


def test_the_last_admin_cannot_demote_disable_or_delete_themselves(
    tmp_path: Path, fixture_wasm: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    server = start_server(_folder(tmp_path, fixture_wasm))
    only, pair = signed_in_admin(server, "only@example.com")
    token = pair["access_token"]
    for changes in ({"roles": ["user"]}, {"roles": []}, {"disabled": True}):
        r = patch_user(server, only["id"], changes, token)
        assert r.status_code == 409 and r.json()["code"] == "CONFLICT", r.text
        assert "last" in r.json()["message"] and "admin" in r.json()["message"]
    r = httpx.delete(f"{server.url}{ADMIN_USERS}/{only['id']}", headers=bearer(token))
    assert r.status_code == 409 and r.json()["code"] == "CONFLICT"
    assert rest_status(server, token, ADMIN_USERS) == 200  # nothing changed, nothing revoked
    # With a second admin, the first may step down.
    create_user(server, "second@example.com", ["admin", "user"])
    assert patch_user(server, only["id"], {"roles": ["user"]}, token).json()["roles"] == ["user"]
    second = httpx.get(f"{server.url}{ADMIN_USERS}?size=100", headers=admin_headers()).json()["items"]
    last = next(u for u in second if u["email"] == "second@example.com")
    assert patch_user(server, last["id"], {"disabled": True}).status_code == 409
    assert httpx.delete(f"{server.url}{ADMIN_USERS}/{last['id']}", headers=admin_headers()).status_code == 409
    assert patch_user(server, last["id"], {"roles": ["admin"]}).status_code == 200  # keeping admin is fine
