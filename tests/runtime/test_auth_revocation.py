"""The auth core in process, on SQLite and PostgreSQL: token revocation, the refresh grace window,
the last admin, logins past the caller's deadline, and the identity schema the migrations build."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from arcana.auth.refresh import DeadlinePassed
from arcana.auth.revocation import Revocation
from arcana.auth.schema import metadata, refresh_tokens
from arcana.auth.service import AuthService, TokenPair
from arcana.config import DatabaseConfig, load_config
from arcana.database import Database, create_db_engine, is_sqlite, migrate
from arcana.errors import Conflict, ServiceUnavailable, Unauthorized, ValidationFailed
from arcana.events import EventBus

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
PASSWORD = "long enough password"
Make = Callable[..., AuthService]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'auth.db'}"
    return str(request.getfixturevalue("fresh_postgres_url"))


@pytest.fixture
def make(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Make]:
    """AuthService instances on one database: each stands for one kernel process (one signing secret)."""
    monkeypatch.setenv("ARCANA_JWT_SECRET", "in-process-test-secret-0123456789-abcdef")
    opened: list[Database] = []

    def build(**auth: str) -> AuthService:
        environ = {
            "ARCANA_DATABASE__URL": database_url,
            "ARCANA_AUTH__ARGON2_TIME_COST": "1",
            "ARCANA_AUTH__ARGON2_MEMORY_KIB": "8192",
            **{f"ARCANA_AUTH__{key.upper()}": value for key, value in auth.items()},
        }
        config = load_config(None, environ=environ)
        database = Database(config.database)
        if not is_sqlite(database.engine):
            migrate(database.engine)  # PostgreSQL is migrated once per deployment, not on first use
        assert database.prepare() is None
        opened.append(database)
        return AuthService(config, database, EventBus())

    yield build
    for database in opened:
        database.close()


def bearer(pair: TokenPair) -> str:
    return f"Bearer {pair.access_token}"


def refused(auth: AuthService, pair: TokenPair) -> bool:
    try:
        auth.authenticate(bearer(pair))
    except Unauthorized:
        return True
    return False


def signed_in(auth: AuthService, email: str, roles: list[str]) -> tuple[str, TokenPair]:
    user = auth.create_user(email, PASSWORD, roles)
    pair = auth.login(email, PASSWORD, "10.0.0.1")
    assert not refused(auth, pair)
    return user.id, pair


# ---- revocation


@pytest.mark.parametrize(
    "revoke",
    [
        pytest.param(lambda auth, uid, pair: auth.delete_user(uid), id="delete"),
        pytest.param(lambda auth, uid, pair: auth.update_user(uid, {"disabled": True}), id="disable"),
        pytest.param(lambda auth, uid, pair: auth.update_user(uid, {"roles": ["reader"]}), id="role change"),
        pytest.param(lambda auth, uid, pair: auth.update_user(uid, {"password": "another password"}), id="password"),
        pytest.param(lambda auth, uid, pair: auth.logout(pair.refresh_token), id="logout"),
    ],
)
def test_revoking_refuses_the_access_tokens_issued_before_on_the_next_call(
    make: Make, revoke: Callable[[AuthService, str, TokenPair], object]
) -> None:
    auth = make()
    user_id, pair = signed_in(auth, "r@example.com", ["user"])
    revoke(auth, user_id, pair)
    with pytest.raises(Unauthorized, match="revoked"):
        auth.authenticate(bearer(pair))


def test_changes_that_revoke_nothing_leave_tokens_alone(make: Make) -> None:
    auth = make()
    user_id, pair = signed_in(auth, "same@example.com", ["user", "editor"])
    auth.update_user(user_id, {"roles": ["editor", "user", "user"]})  # the same set of roles
    auth.update_user(user_id, {"disabled": False})
    assert not refused(auth, pair)


def test_a_token_issued_right_after_a_revocation_is_accepted(make: Make) -> None:
    """Kernel tokens carry the epoch, so the one-second resolution of `iat` does not refuse them."""
    auth = make()
    user_id, pair = signed_in(auth, "again@example.com", ["admin", "user"])
    auth.create_user("other-admin@example.com", PASSWORD, ["admin"])
    for _ in range(3):  # several revocations within one second
        auth.update_user(user_id, {"roles": ["user"]})
        fresh = auth.refresh(pair.refresh_token)
        assert refused(auth, pair) and not refused(auth, fresh)
        assert auth.authenticate(bearer(fresh)).roles == ("user",)  # type: ignore[union-attr]
        auth.update_user(user_id, {"roles": ["admin", "user"]})
        pair = auth.refresh(fresh.refresh_token)


def test_tokens_without_an_epoch_are_judged_by_their_issue_time() -> None:
    """An independent issuer's token (no epoch claim): good only if issued after the revocation, by whole seconds."""
    revocation = Revocation(epoch=3, revoked_at=1000.5)
    assert not revocation.admits(issued_at=1000, epoch=None)  # the same second: refused, to be safe
    assert revocation.admits(issued_at=1001, epoch=None)
    assert not revocation.admits(issued_at=2000, epoch=2) and revocation.admits(issued_at=0, epoch=3)


def test_another_process_refuses_a_revoked_token_once_its_cache_expires(make: Make) -> None:
    """The documented trade-off: the revoking process refuses at once; another within revocation_cache_s."""
    here = make()
    user_id, pair = signed_in(here, "two-procs@example.com", ["user"])
    caching, uncached = make(revocation_cache_s="60"), make(revocation_cache_s="0")
    assert not refused(caching, pair) and not refused(uncached, pair)  # the caching one now holds "never revoked"
    here.update_user(user_id, {"disabled": True})
    assert refused(here, pair) and refused(uncached, pair)
    assert not refused(caching, pair)  # still inside its 60 s: what revocation_cache_s bounds


def test_reuse_after_the_grace_window_revokes_the_family_and_its_access_tokens(make: Make) -> None:
    auth = make(refresh_reuse_grace_s="0")
    _, pair = signed_in(auth, "reuse@example.com", ["user"])
    successor = auth.refresh(pair.refresh_token)
    with pytest.raises(Unauthorized):
        auth.refresh(pair.refresh_token)
    with pytest.raises(Unauthorized):
        auth.refresh(successor.refresh_token)
    assert refused(auth, successor) and refused(auth, pair)


def test_a_double_submit_within_the_grace_window_gets_a_sibling_in_the_same_family(make: Make) -> None:
    auth = make(refresh_reuse_grace_s="10")
    _, pair = signed_in(auth, "double@example.com", ["user"])
    one, two = auth.refresh(pair.refresh_token), auth.refresh(pair.refresh_token)
    assert one.refresh_token != two.refresh_token and not refused(auth, one) and not refused(auth, two)
    with auth.database.engine.connect() as c:
        families = c.execute(sa.select(sa.func.count(sa.distinct(refresh_tokens.c.family_id)))).scalar_one()
    assert families == 1
    auth.logout(one.refresh_token)  # one family: logging out ends both branches
    with pytest.raises(Unauthorized):
        auth.refresh(two.refresh_token)


def test_logout_everywhere_ends_every_family_and_plain_logout_only_its_own(make: Make) -> None:
    auth = make()
    signed_in(auth, "devices@example.com", ["user"])
    phone, laptop, tablet = (auth.login("devices@example.com", PASSWORD, "10.0.0.2") for _ in range(3))
    auth.logout(phone.refresh_token)
    assert refused(auth, laptop)  # every access token issued before the logout
    laptop = auth.refresh(laptop.refresh_token)
    auth.logout(laptop.refresh_token, everywhere=True)
    with pytest.raises(Unauthorized):
        auth.refresh(tablet.refresh_token)
    with pytest.raises(ValidationFailed):
        auth.logout(tablet.refresh_token, everywhere="yes")


# ---- the last admin


def test_the_last_enabled_admin_cannot_be_demoted_disabled_or_deleted(make: Make) -> None:
    auth = make()
    only, pair = signed_in(auth, "only@example.com", ["admin"])
    for changes in ({"roles": ["user"]}, {"disabled": True}):
        with pytest.raises(Conflict, match="last enabled admin"):
            auth.update_user(only, changes)
    with pytest.raises(Conflict, match="last enabled admin"):
        auth.delete_user(only)
    assert auth.get_user(only).roles == ("admin",) and not refused(auth, pair)
    # A disabled admin does not count; an enabled one does.
    disabled = auth.create_user("disabled-admin@example.com", PASSWORD, ["admin"])
    auth.update_user(disabled.id, {"disabled": True})
    with pytest.raises(Conflict):
        auth.delete_user(only)
    auth.create_user("second@example.com", PASSWORD, ["admin"])
    auth.delete_user(only)


def test_users_who_are_not_admins_are_managed_freely_without_any_admin(make: Make) -> None:
    auth = make()
    user = auth.create_user("plain@example.com", PASSWORD, ["user"])
    auth.update_user(user.id, {"disabled": True})
    auth.delete_user(user.id)


# ---- emails and deadlines


@pytest.mark.parametrize("email", ["a" * 250 + "@b.cd", "nul\x00@example.com", "bidi\u202e@example.com", "x\x85@y.z"])
def test_login_refuses_over_long_and_control_character_emails_before_any_work(make: Make, email: str) -> None:
    auth = make()
    with pytest.raises(ValidationFailed):
        auth.login(email, PASSWORD, "10.0.0.3")
    with pytest.raises(ValidationFailed):
        auth.create_user(email, PASSWORD, [])
    assert len(auth._per_account) == 0 and len(auth._per_address) == 0


def test_a_login_past_its_deadline_stores_no_session(make: Make) -> None:
    auth = make()
    auth.create_user("late@example.com", PASSWORD, ["user"])
    with pytest.raises(ServiceUnavailable, match="deadline"):
        auth.login("late@example.com", PASSWORD, "10.0.0.4", deadline=time.monotonic() - 1)
    user = auth.users.by_email("late@example.com")
    assert user is not None
    with pytest.raises(DeadlinePassed):  # the last check, inside the transaction, rolls the insert back
        auth.refresh_tokens.start_family(user.id, deadline=time.monotonic() - 1)
    with auth.database.engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(refresh_tokens)).scalar_one() == 0
    auth.login("late@example.com", PASSWORD, "10.0.0.4", deadline=time.monotonic() + 60)
    with auth.database.engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(refresh_tokens)).scalar_one() == 1


# ---- schema


def test_migrations_build_exactly_the_identity_schema(database_url: str) -> None:
    engine = create_db_engine(DatabaseConfig(url=database_url))
    migrate(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": _identity_tables})
        diff = compare_metadata(context, metadata)
    engine.dispose()
    assert diff == []


def _identity_tables(name: str | None, type_: str, parent_names: object) -> bool:
    return type_ != "table" or name in metadata.tables
