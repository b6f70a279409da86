"""Who may read /metrics (arcana.edge.metrics): the scrape token, an admin, or anyone when public."""

from __future__ import annotations

import pytest

from arcana.config import ServerConfig
from arcana.edge.metrics import MetricsAccess
from arcana.errors import ConfigError, Forbidden, Unauthorized
from arcana.types import Principal

TOKEN = "t" * 32


def _principal(roles: tuple[str, ...]) -> Principal:
    return Principal(sub="u", roles=roles, issued_at=0)


def _authenticate(authorization: str) -> Principal | None:
    tokens = {"Bearer admin-jwt": _principal(("admin",)), "Bearer user-jwt": _principal(("reader",))}
    if not authorization:
        return None
    if authorization not in tokens:
        raise Unauthorized("invalid token")
    return tokens[authorization]


def test_metrics_access_takes_the_scrape_token_or_an_admin() -> None:
    access = MetricsAccess(ServerConfig(), _authenticate, environ={"ARCANA_METRICS_TOKEN": TOKEN})
    for ok in (f"Bearer {TOKEN}", f"bearer  {TOKEN} ", "Bearer admin-jwt"):
        access.check(ok)
    for refused, error in (("", Unauthorized), (f"Bearer {TOKEN}x", Unauthorized), ("Bearer user-jwt", Forbidden)):
        with pytest.raises(error):
            access.check(refused)


def test_without_a_token_in_the_environment_only_admins_pass() -> None:
    access = MetricsAccess(ServerConfig(), _authenticate, environ={})
    access.check("Bearer admin-jwt")
    with pytest.raises(Unauthorized):
        access.check(f"Bearer {TOKEN}")


def test_metrics_public_admits_anyone_and_a_short_token_is_refused() -> None:
    MetricsAccess(ServerConfig(metrics_public=True), _authenticate, environ={}).check("")
    with pytest.raises(ConfigError, match=r"\$ARCANA_METRICS_TOKEN is shorter than 32 bytes"):
        MetricsAccess(ServerConfig(), _authenticate, environ={"ARCANA_METRICS_TOKEN": "t" * 31})
