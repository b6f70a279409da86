"""The kernel's job queue: one protocol (``arcana.queue.types``), SQL and Redis backends, workers, schedules."""
