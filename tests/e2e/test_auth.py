"""Identity end to end: users, login, refresh rotation and reuse, logout, RBAC at both edges, token attacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from conftest import ROOT
from e2e.grpc_support import generate_stubs, make_pki
from e2e.server import TEST_SECRET, ArcanaServer, admin_headers, mint

GUARDED = """[plugin]
name = "guarded"
version = "1.0.0"
[[route]]
method = "POST"
path = "/api/v1/guarded/any/{id}"
handler = "inspect"
[[route]]
method = "POST"
path = "/api/v1/guarded/admin/{id}"
handler = "inspect"
roles = ["admin"]
[[grpc]]
method = "inspect.v1.Inspect/Envelope"
handler = "inspect"
roles = ["admin"]
"""
PASSWORD = "correct horse battery"


def _folder(base: Path, fixture_wasm: dict[str, Path]) -> Path:
    folder = base / "plugins"
    folder.mkdir()
    shutil.copyfile(fixture_wasm["inspect"], folder / "guarded.wasm")
    (folder / "guarded.toml").write_text(GUARDED)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fixture_wasm: dict[str, Path]) -> Iterator[ArcanaServer]:
    work = tmp_path_factory.mktemp("auth")
    # No refresh grace here: the rotation test below replays a used token at once and pins reuse detection.
    auth = {"dev": False, "login_failures_per_account": 3, "refresh_reuse_grace_s": 0}
    srv = ArcanaServer(_folder(work, fixture_wasm), work, {"auth": auth}).start()
    yield srv
    srv.stop()


def create_user(server: ArcanaServer, email: str, roles: list[str], password: str = PASSWORD) -> dict[str, Any]:
    r = httpx.post(
        f"{server.url}/api/v1/admin/users",
        json={"email": email, "password": password, "roles": roles},
        headers=admin_headers(),
    )
    assert r.status_code == 201, r.text
    return r.json()


def login(server: ArcanaServer, email: str, password: str = PASSWORD) -> httpx.Response:
    return httpx.post(f"{server.url}/api/v1/auth/login", json={"email": email, "password": password})


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_login_refresh_rotation_reuse_detection_and_logout(server: ArcanaServer) -> None:
    create_user(server, "Rota@Example.com", ["user"])
    r = login(server, "rota@EXAMPLE.com")  # emails are case-insensitive
    assert r.status_code == 200, r.text
    pair = r.json()
    assert pair["token_type"] == "Bearer" and pair["expires_in"] == 900
    claims = jwt.decode(pair["access_token"], TEST_SECRET, algorithms=["HS256"], audience="arcana")
    assert set(claims) >= {"sub", "roles", "iat", "exp", "jti", "iss", "aud"} and claims["roles"] == ["user"]
    first = pair["refresh_token"]
    rotated = httpx.post(f"{server.url}/api/v1/auth/refresh", json={"refresh_token": first}).json()
    second = rotated["refresh_token"]
    assert second != first
    # The rotated-away token is dead, and presenting it again revokes the whole family.
    reuse = httpx.post(f"{server.url}/api/v1/auth/refresh", json={"refresh_token": first})
    assert reuse.status_code == 401
    assert httpx.post(f"{server.url}/api/v1/auth/refresh", json={"refresh_token": second}).status_code == 401
    assert "auth.token_reuse_detected" in server.logs()
    # A new login starts a new family; logout ends it.
    third = login(server, "rota@example.com").json()["refresh_token"]
    assert httpx.post(f"{server.url}/api/v1/auth/logout", json={"refresh_token": third}).status_code == 204
    assert httpx.post(f"{server.url}/api/v1/auth/refresh", json={"refresh_token": third}).status_code == 401


def test_rbac_on_plugin_routes_and_the_principal_reaches_the_plugin(server: ArcanaServer) -> None:
    user = create_user(server, "rbac@example.com", ["user"])
    admin = create_user(server, "boss@example.com", ["admin"])
    user_token = login(server, "rbac@example.com").json()["access_token"]
    admin_token = login(server, "boss@example.com").json()["access_token"]
    any_url, admin_url = f"{server.url}/api/v1/guarded/any/1", f"{server.url}/api/v1/guarded/admin/1"
    r = httpx.post(any_url, json={})
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED" and r.headers["www-authenticate"] == "Bearer"
    seen = httpx.post(any_url, json={}, headers=bearer(user_token)).json()
    assert seen["principal"] == {"sub": user["id"], "roles": ["user"]} and "authorization" not in seen["headers"]
    r = httpx.post(admin_url, json={}, headers=bearer(user_token))
    assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN"
    assert httpx.post(admin_url, json={}, headers=bearer(admin_token)).json()["principal"]["sub"] == admin["id"]


def test_wrong_password_and_unknown_user_fail_in_the_same_shape(server: ArcanaServer) -> None:
    create_user(server, "shape@example.com", ["user"])
    wrong = login(server, "shape@example.com", "not the password")
    unknown = login(server, "nobody@example.com", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    strip = lambda r: {k: v for k, v in r.json().items() if k not in ("request_id", "timestamp")}  # noqa: E731
    assert strip(wrong) == strip(unknown) == {"code": "INVALID_CREDENTIALS", "message": "invalid email or password"}
    assert "not the password" not in server.logs()


def test_failed_logins_are_rate_limited_per_account(server: ArcanaServer) -> None:
    create_user(server, "limited@example.com", ["user"])
    codes = [login(server, "limited@example.com", "guess").status_code for _ in range(3)]
    blocked = login(server, "limited@example.com")  # even the right password waits now
    assert codes == [401, 401, 401] and blocked.status_code == 429
    assert blocked.json()["code"] == "RATE_LIMITED" and int(blocked.headers["retry-after"]) > 0
    assert login(server, "rbac-other@example.com", "x" * 8).status_code == 401  # other accounts unaffected


def test_admin_user_management(server: ArcanaServer) -> None:
    user = create_user(server, "managed@example.com", ["user"])
    refresh = login(server, "managed@example.com").json()["refresh_token"]
    r = httpx.patch(
        f"{server.url}/api/v1/admin/users/{user['id']}", json={"roles": ["user", "editor"]}, headers=admin_headers()
    )
    assert r.json()["roles"] == ["editor", "user"]
    page = httpx.get(f"{server.url}/api/v1/admin/users?page=1&size=2", headers=admin_headers()).json()
    assert page["size"] == 2 and len(page["items"]) <= 2 and page["total"] >= 1
    assert (
        httpx.post(
            f"{server.url}/api/v1/admin/users",
            json={"email": "MANAGED@example.com", "password": PASSWORD},
            headers=admin_headers(),
        ).status_code
        == 409
    )
    httpx.patch(f"{server.url}/api/v1/admin/users/{user['id']}", json={"disabled": True}, headers=admin_headers())
    assert login(server, "managed@example.com").status_code == 401
    assert httpx.post(f"{server.url}/api/v1/auth/refresh", json={"refresh_token": refresh}).status_code == 401
    assert httpx.delete(f"{server.url}/api/v1/admin/users/{user['id']}", headers=admin_headers()).status_code == 204
    assert httpx.get(f"{server.url}/api/v1/admin/users/{user['id']}", headers=admin_headers()).status_code == 404
    assert httpx.get(f"{server.url}/api/v1/admin/users", headers=bearer(mint("x", ["user"]))).status_code == 403
    assert httpx.get(f"{server.url}/api/v1/admin/users").status_code == 401
    assert "admin.user_changed" in server.logs()


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _attacks() -> dict[str, str]:
    now = int(time.time())
    good = mint("attacker", ["admin"])
    header, _payload, signature = good.split(".")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {
        "sub": "attacker",
        "roles": ["admin"],
        "iat": now,
        "exp": now + 300,
        "jti": "j",
        "iss": "arcana",
        "aud": "arcana",
    }
    return {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "expired": mint("attacker", ["admin"], ttl=-10),
        "not yet valid": mint("attacker", ["admin"], nbf=now + 3600),
        "wrong audience": mint("attacker", ["admin"], aud="someone-else"),
        "wrong issuer": mint("attacker", ["admin"], iss="evil"),
        "wrong secret": mint("attacker", ["admin"], secret="another-secret-another-secret-0123456789"),
        "tampered payload": f"{header}.{_b64({**claims, 'roles': ['admin', 'root']})}.{signature}",
        "missing jti": jwt.encode({k: v for k, v in claims.items() if k != "jti"}, TEST_SECRET, algorithm="HS256"),
        "RS256 with a stranger's key": jwt.encode(claims, rsa_key, algorithm="RS256"),
        "malformed": "not.a.jwt",
        "garbage": "%%%",
    }


@pytest.mark.parametrize("attack", sorted(_attacks()))
def test_token_attacks_are_refused_with_401(server: ArcanaServer, attack: str) -> None:
    token = _attacks()[attack]
    r = httpx.post(f"{server.url}/api/v1/guarded/any/1", json={}, headers=bearer(token))
    assert r.status_code == 401, (attack, r.text)
    assert r.json()["code"] == ("TOKEN_EXPIRED" if attack == "expired" else "UNAUTHORIZED")
    assert token not in server.logs()


def test_a_token_from_an_independent_jwt_implementation_is_accepted(server: ArcanaServer) -> None:
    client = ROOT / "tests" / "e2e" / "node_client"
    if not (client / "node_modules" / "jsonwebtoken").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=client, check=True, capture_output=True, timeout=300
        )
    token = subprocess.run(
        ["node", str(client / "sign_jwt.js"), TEST_SECRET, "node-user", "admin"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    seen = httpx.post(f"{server.url}/api/v1/guarded/admin/1", json={}, headers=bearer(token))
    assert seen.status_code == 200 and seen.json()["principal"] == {"sub": "node-user", "roles": ["admin"]}


def test_grpc_login_and_role_checks(server: ArcanaServer, tmp_path: Path) -> None:
    create_user(server, "grpc@example.com", ["user"])
    pb, stubs = generate_stubs(ROOT / "proto" / "arcana" / "auth" / "v1" / "auth.proto", tmp_path / "auth")

    def call_inspect(ch: grpc.Channel, md: Any) -> bytes:
        method = ch.unary_unary(
            "/inspect.v1.Inspect/Envelope", request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        return method(b"", metadata=md)  # type: ignore[no-any-return]

    with grpc.insecure_channel(server.grpc_address) as channel:
        auth = stubs.AuthServiceStub(channel)
        pair = auth.Login(pb.LoginRequest(email="grpc@example.com", password=PASSWORD))
        assert pair.token_type == "Bearer" and pair.access_token
        with pytest.raises(grpc.RpcError) as info:
            auth.Login(pb.LoginRequest(email="grpc@example.com", password="wrong-password"))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        rotated = auth.Refresh(pb.RefreshRequest(refresh_token=pair.refresh_token))
        assert rotated.refresh_token != pair.refresh_token
        for metadata, code in (
            ((), grpc.StatusCode.UNAUTHENTICATED),
            ((("authorization", "Bearer " + rotated.access_token),), grpc.StatusCode.PERMISSION_DENIED),
            ((("authorization", "Bearer " + _attacks()["alg none"]),), grpc.StatusCode.UNAUTHENTICATED),
        ):
            with pytest.raises(grpc.RpcError) as info:
                call_inspect(channel, metadata)
            assert info.value.code() == code
        assert call_inspect(channel, list(admin_headers().items()))[:1] == b"\x0a"
        auth.Logout(pb.LogoutRequest(refresh_token=rotated.refresh_token))
        with pytest.raises(grpc.RpcError) as info:
            auth.Refresh(pb.RefreshRequest(refresh_token=rotated.refresh_token))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_cli_bootstraps_an_admin_who_can_log_in(
    tmp_path: Path, fixture_wasm: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    server = start_server(_folder(tmp_path, fixture_wasm))
    cli = subprocess.run(
        check=False,
        args=[
            sys.executable,
            "-m",
            "arcana.cli",
            "user",
            "create",
            "--email",
            "root@example.com",
            "--role",
            "admin",
            "--config",
            str(server.config_path),
        ],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert PASSWORD not in cli.stdout + cli.stderr
    token = login(server, "root@example.com").json()["access_token"]
    assert httpx.get(f"{server.url}/api/v1/admin/plugins", headers=bearer(token)).status_code == 200


def test_production_mode_refuses_to_start_without_a_strong_secret(tmp_path: Path) -> None:
    config = tmp_path / "prod.yaml"
    config.write_text("auth:\n  dev: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCANA_")}
    env["ARCANA_JWT_SECRET"] = "tiny-s3cret"
    env["ARCANA_DATABASE__URL"] = f"sqlite:///{tmp_path / 'prod.db'}"
    r = subprocess.run(
        [sys.executable, "-m", "arcana.cli", "serve", "--config", str(config), "--http-port", "0"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 2 and "ARCANA_JWT_SECRET" in r.stderr and "tiny-s3cret" not in r.stderr


def _hs256_signed_with(key: bytes, claims: dict[str, Any], kid: str) -> str:
    """Algorithm confusion by hand (PyJWT itself refuses to make one): HS256 keyed with the public key."""
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{_b64(claims)}"
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def _keypair(kind: str, folder: Path, kid: str) -> dict[str, str]:
    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "RS256"
        else ed25519.Ed25519PrivateKey.generate()
    )
    private, public = folder / f"{kid}.key", folder / f"{kid}.pub"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return {"kid": kid, "private_key_file": str(private), "public_key_file": str(public)}


@pytest.mark.parametrize("algorithm", ["RS256", "EdDSA"])
def test_asymmetric_keys_rotate_by_kid_and_refuse_algorithm_confusion(
    algorithm: str, tmp_path: Path, fixture_wasm: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    old, new = _keypair(algorithm, tmp_path, "k1"), _keypair(algorithm, tmp_path, "k2")
    signing = serialization.load_pem_private_key(Path(old["private_key_file"]).read_bytes(), None)
    now = int(time.time())
    claims = {
        "sub": "rot",
        "roles": ["admin"],
        "iat": now,
        "exp": now + 300,
        "jti": "j1",
        "iss": "arcana",
        "aud": "arcana",
    }
    old_token = jwt.encode(claims, signing, algorithm=algorithm, headers={"kid": "k1"})
    server = start_server(
        _folder(tmp_path, fixture_wasm),
        {"auth": {"algorithm": algorithm, "keys": [old, new], "active_kid": "k2", "dev": False}},
    )
    url = f"{server.url}/api/v1/guarded/admin/1"
    assert httpx.post(url, json={}, headers=bearer(old_token)).status_code == 200  # signed before rotation, still valid
    confused = _hs256_signed_with(Path(new["public_key_file"]).read_bytes(), claims, "k2")
    assert httpx.post(url, json={}, headers=bearer(confused)).status_code == 401
    unknown_kid = jwt.encode(claims, signing, algorithm=algorithm, headers={"kid": "k9"})
    assert httpx.post(url, json={}, headers=bearer(unknown_kid)).status_code == 401


def test_rest_mtls_requires_a_client_certificate_from_the_ca(
    tmp_path: Path, fixture_wasm: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    pki = make_pki(tmp_path / "pki")
    tls = {
        "cert_file": str(pki["server.pem"]),
        "key_file": str(pki["server.key"]),
        "client_ca_file": str(pki["ca.pem"]),
    }
    server = ArcanaServer(_folder(tmp_path, fixture_wasm), tmp_path, {"server": {"http_tls": tls}})
    server.url = server.url.replace("http://", "https://")
    import ssl

    def context(cert: str | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(pki["ca.pem"]))
        if cert:
            ctx.load_cert_chain(str(pki[f"{cert}.pem"]), str(pki[f"{cert}.key"]))
        return ctx

    server.start(wait_ready=False)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{server.url}/ready", verify=context("client")).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, server.logs()[-2000:]
                time.sleep(0.1)
        for stranger in (None, "stranger"):
            with pytest.raises(httpx.TransportError):
                httpx.get(f"{server.url}/health", verify=context(stranger))
    finally:
        server.stop()


def test_auth_host_functions_reach_plugins_through_the_sdk(
    tmp_path: Path, fixture_wasm: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copyfile(fixture_wasm["authz"], folder / "authz.wasm")
    server = start_server(folder, {"grants": {"*": ["log"], "authz": ["auth", "auth.issue"]}})
    base = f"{server.url}/api/v1/test/authz"
    hashed = httpx.post(f"{base}/hash", json={"password": PASSWORD}).json()["hash"]
    assert hashed.startswith("$argon2id$")
    assert httpx.post(f"{base}/verify", json={"hash": hashed, "password": PASSWORD}).json() == {"valid": True}
    assert httpx.post(f"{base}/verify", json={"hash": hashed, "password": "wrong"}).json() == {"valid": False}
    assert httpx.get(f"{base}/admin", headers=bearer(mint("u", ["user"]))).json() == {"admin": False}
    assert httpx.get(f"{base}/admin", headers=admin_headers()).json() == {"admin": True}
    issued = httpx.post(f"{base}/issue", json={"sub": "minted"}, headers=admin_headers()).json()["token"]
    claims = jwt.decode(issued, TEST_SECRET, algorithms=["HS256"], audience="arcana")
    assert claims["sub"] == "minted" and claims["roles"] == ["reader"] and claims["exp"] - claims["iat"] == 60


def test_auth_issue_needs_its_own_grant(
    tmp_path: Path, fixture_wasm: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copyfile(fixture_wasm["authz"], folder / "authz.wasm")
    server = start_server(folder, {"grants": {"*": ["log"], "authz": ["auth"]}})
    failures = httpx.get(f"{server.url}/api/v1/admin/plugins", headers=admin_headers()).json()["failures"]
    assert any("auth_issue_token: needs capability 'auth.issue'" in e for e in failures[0]["errors"])


def test_assemblyscript_auth_bindings(
    tmp_path: Path, fixture_wasm: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copyfile(fixture_wasm["authz_as"], folder / "authz-as.wasm")
    server = start_server(folder, {"grants": {"*": ["log"], "authz-as": ["auth"]}})
    r = httpx.post(f"{server.url}/api/v1/test/authz-as/hash", json={"password": PASSWORD}).json()
    assert r["hash"].startswith("$argon2id$") and r["valid"] is True
    assert httpx.get(f"{server.url}/api/v1/test/authz-as/admin", headers=admin_headers()).json() == {"admin": True}


def test_failed_logins_are_rate_limited_per_client_address(
    tmp_path: Path, fixture_wasm: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    server = start_server(_folder(tmp_path, fixture_wasm), {"auth": {"login_failures_per_address": 3}})
    codes = [login(server, f"spray{i}@example.com", "guess-guess").status_code for i in range(3)]
    blocked = login(server, "fresh@example.com", "guess-guess")
    assert codes == [401, 401, 401] and blocked.status_code == 429 and "retry-after" in blocked.headers
