"""Run every library benchmark in turn (SQLite, Redis, PostgreSQL); the dashboard bench,
which builds a store of a million states, runs only with ``--dashboard``.

    python bench/run_all.py [--dashboard]

Each script compares the store with the raw driver in the same run and prints the ratios.
Exits non-zero if any target was missed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["bench_sqlite.py", "bench_redis.py", "bench_postgres.py"]


def main() -> int:
    scripts = SCRIPTS + (["bench_dashboard.py"] if "--dashboard" in sys.argv else [])
    failed = []
    for script in scripts:
        print(f"\n===== {script}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script)], check=False).returncode:
            failed.append(script)
    if failed:
        print(f"\ntargets missed in: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
