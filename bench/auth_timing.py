"""Login timing: unknown user vs wrong password (and a good login), in one process, one run.

    .venv/bin/python bench/auth_timing.py [--rounds 40]

An attacker must not learn whether an account exists from how long a failed
login takes. Both failure paths run one Argon2id verification (a decoy hash
stands in for the missing user); this prints the median of each, interleaved,
and their ratio. Measured here, never asserted in a test.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from arcana.auth.service import AuthService
from arcana.config import load_config
from arcana.database import Database
from arcana.errors import ArcanaError
from arcana.events import KernelEvents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "ARCANA_DATABASE__URL": f"sqlite:///{Path(tmp) / 'bench.db'}",
            # no lockout during the bench: every attempt must reach the password check
            "ARCANA_AUTH__LOGIN_FAILURES_PER_ACCOUNT": "1000000",
            "ARCANA_AUTH__LOGIN_FAILURES_PER_ADDRESS": "1000000",
        }
        config = load_config(None, environ=env)
        database = Database(config.database)
        not_ready = database.prepare()  # creates the SQLite schema; names what is wrong otherwise
        if not_ready:
            raise SystemExit(f"database: {not_ready}")
        auth = AuthService(config, database, KernelEvents())
        auth.create_user("known@example.com", "the right password", ["user"])
        cases = {
            "unknown user": ("nobody@example.com", "wrong password"),
            "wrong password": ("known@example.com", "wrong password"),
            "good login": ("known@example.com", "the right password"),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, (email, password) in cases.items():
                start = time.perf_counter()
                try:
                    auth.login(email, password, "127.0.0.1")
                except ArcanaError:
                    pass
                times[name].append(time.perf_counter() - start)
        database.close()
    for name, values in times.items():
        print(
            f"{name:15} median {statistics.median(values) * 1000:7.2f} ms   p90 "
            f"{sorted(values)[int(0.9 * len(values))] * 1000:7.2f} ms"
        )
    ratio = statistics.median(times["unknown user"]) / statistics.median(times["wrong password"])
    print(
        f"unknown/wrong-password median ratio: {ratio:.3f} (1.0 = indistinguishable; {args.rounds} rounds, "
        f"argon2 t={config.auth.argon2_time_cost} m={config.auth.argon2_memory_kib}KiB)"
    )


if __name__ == "__main__":
    main()
