"""The auth core in process: rehash on login when Argon2 parameters change, and event payloads without secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from arcana.auth.service import AuthService
from arcana.config import ArcanaConfig, load_config
from arcana.database import Database
from arcana.errors import InvalidCredentials, RateLimited, ValidationFailed
from arcana.events import EventBus


def _service(db: Path, time_cost: int, events: EventBus | None = None) -> tuple[AuthService, Database]:
    config: ArcanaConfig = load_config(
        None,
        environ={
            "ARCANA_DATABASE__URL": f"sqlite:///{db}",
            "ARCANA_AUTH__ARGON2_TIME_COST": str(time_cost),
            "ARCANA_AUTH__ARGON2_MEMORY_KIB": "8192",
        },
    )
    database = Database(config.database)
    assert database.prepare() is None
    return AuthService(config, database, events or EventBus()), database


def test_login_rehashes_when_the_argon2_parameters_change(tmp_path: Path) -> None:
    old, old_db = _service(tmp_path / "a.db", time_cost=1)
    old.create_user("p@example.com", "long enough password", ["user"])
    before = old.users.by_email("p@example.com")
    old_db.close()
    new, new_db = _service(tmp_path / "a.db", time_cost=3)
    new.login("p@example.com", "long enough password", "127.0.0.1")
    after = new.users.by_email("p@example.com")
    new_db.close()
    assert before is not None and after is not None
    assert "t=1" in before.password_hash and "t=3" in after.password_hash


def test_auth_events_carry_no_secrets(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    events = EventBus()
    events.subscribe(seen.append)
    auth, db = _service(tmp_path / "b.db", time_cost=1, events=events)
    auth.create_user("e@example.com", "long enough password", ["user"])
    pair = auth.login("e@example.com", "long enough password", "10.1.2.3")
    auth.logout(pair.refresh_token)
    db.close()
    topics = [e["topic"] for e in seen]
    assert topics == ["admin.user_changed", "auth.login", "auth.logout"]
    text = repr(seen)
    assert "long enough password" not in text and pair.refresh_token not in text and pair.access_token not in text


def test_a_plugin_cannot_make_the_host_verify_a_hash_dearer_than_its_own(tmp_path: Path) -> None:
    service, database = _service(tmp_path / "a.db", time_cost=1)
    try:
        stored = "$argon2id$v=19$m=1048576,t=1,p=1$c2FsdHNhbHRzYWx0$" + "A" * 43  # 1 GiB asked: never run
        with pytest.raises(ValidationFailed, match="more Argon2 memory"):
            service.verify_password(stored, "whatever")
        own = service.hash_password("correct horse battery")
        assert service.verify_password(own, "correct horse battery") is True
    finally:
        database.close()


def test_a_login_refused_by_the_failure_limit_is_counted_under_scope_login(tmp_path: Path) -> None:
    def refused() -> float:
        return REGISTRY.get_sample_value("arcana_rate_limited_total", {"scope": "login"}) or 0.0

    auth, db = _service(tmp_path / "c.db", time_cost=1)
    before = refused()
    failures = load_config(None, environ={}).auth.login_failures_per_account
    for _ in range(failures):
        with pytest.raises(InvalidCredentials):
            auth.login("nobody@example.com", "wrong password", "10.1.2.3")
    assert refused() == before  # failures are not refusals
    for _ in range(2):
        with pytest.raises(RateLimited):
            auth.login("nobody@example.com", "wrong password", "10.1.2.3")
    db.close()
    assert refused() - before == 2
