"""The library is usable without Django or any database driver."""

from __future__ import annotations

import subprocess
import sys


def test_import_persistence_loads_no_django_or_driver() -> None:
    code = (
        "import sys, persistence\n"
        "s = persistence.connect('memory://'); s.save_with_metadata({'a': 1}, 'x')\n"
        "import persistence.backends.sqlite\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('django', 'redis', 'psycopg', 'psycopg_pool', 'celery'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
