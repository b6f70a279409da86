"""Jobs one plugin call may put into the queue: ``queue.max_enqueues_per_call``, enqueues and emits together.

One budget per plugin call, kept in the call's ``prepared`` map under a key of
its own so that ``queue_enqueue`` and ``event_emit`` (two capabilities, each
with its own per-call state) draw on the same count. Without it one request
could fan out into an unbounded number of jobs.
"""

from __future__ import annotations

from dataclasses import dataclass

from arcana.errors import ArcanaError, ErrorCode
from arcana.types import CallContext

# Not a capability name (those are grants, which never hold '/'), so it cannot clash with one's state.
_KEY = "queue/budget"


@dataclass(slots=True)
class CallBudget:
    limit: int
    used: int = 0

    @classmethod
    def of(cls, call: CallContext, limit: int) -> CallBudget:
        """The budget of ``call``, made on first use."""
        budget = call.prepared.get(_KEY)
        if not isinstance(budget, CallBudget):
            budget = call.prepared[_KEY] = cls(limit)
        return budget

    def spend(self, what: str) -> None:
        """Count one enqueue or emit; RATE_LIMITED once the call has used its budget."""
        if self.used >= self.limit:
            raise ArcanaError(
                f"{what} refused: one plugin call may enqueue and emit at most {self.limit} times "
                "(queue.max_enqueues_per_call); enqueue a job that does the rest",
                code=ErrorCode.RATE_LIMITED,
            )
        self.used += 1
