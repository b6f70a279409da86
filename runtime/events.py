"""Kernel events: one internal interface every kernel part emits through.

Named events and their payloads (never secrets, hashes or tokens)::

    auth.login                  {"user_id", "email", "address"}
    auth.login_failed           {"email", "address", "reason"}
                                reason: credentials | rate_limited | disabled | deadline
    auth.logout                 {"user_id"}
    auth.token_reuse_detected   {"user_id"}                      the family and the user's access tokens are revoked
    admin.user_changed          {"user_id", "change"}            change: created | roles | disabled | enabled | deleted

Today an event is logged and handed to in-process listeners; durable delivery
to subscribed plugins through the queue comes with the job queue.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

AUTH_LOGIN = "auth.login"
AUTH_LOGIN_FAILED = "auth.login_failed"
AUTH_LOGOUT = "auth.logout"
AUTH_TOKEN_REUSE = "auth.token_reuse_detected"
ADMIN_USER_CHANGED = "admin.user_changed"

logger = logging.getLogger("arcana.events")
Listener = Callable[[dict[str, Any]], None]


class KernelEvents:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def emit(self, topic: str, payload: dict[str, Any]) -> None:
        event = {"id": uuid.uuid4().hex, "topic": topic, "source": "kernel", "time": time.time(), "payload": payload}
        logger.info("event %s", topic, extra={"event": event})
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # one bad listener must not stop the others or the emitter
                logger.exception("event listener failed for %s", topic)
