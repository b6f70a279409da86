"""Resilience as a kernel service: circuit breakers and retries, shaped alike for every caller.

``breaker`` holds the state machine and a bounded board of named breakers;
``retry`` the backoff policy and the loop that applies it. Plugin calls,
backends (database, Redis) and outbound HTTP use the same two pieces.
``service`` is the kernel's set of boards (``Kernel.resilience``) and what a
state change does (a WARNING, a ``breaker.*`` kernel event); ``guard`` puts
one backend's calls behind its breaker with retries where they are safe;
``metrics`` exposes every breaker's state to Prometheus.
"""

from arcana.resilience.breaker import BreakerBoard, BreakerPolicy, BreakerState, CircuitBreaker, Permit
from arcana.resilience.retry import RetryPolicy, retry_call, retry_call_async

__all__ = [
    "BreakerBoard",
    "BreakerPolicy",
    "BreakerState",
    "CircuitBreaker",
    "Permit",
    "RetryPolicy",
    "retry_call",
    "retry_call_async",
]
