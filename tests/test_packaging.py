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


def test_connect_rejects_unknown_schemes_listing_the_valid_ones() -> None:
    import pytest

    from persistence import connect

    with pytest.raises(ValueError, match=r"memory://.*sqlite://.*redis://.*postgresql://"):
        connect("mysql://root:secret@db/x")
    with pytest.raises(ValueError) as info:
        connect("mongodb://user:hunter2@host/db")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ValueError, match="sqlite"):
        connect("sqlite://")


def test_named_memory_stores_are_shared_in_process() -> None:
    from persistence import connect

    a = connect("memory://shared-test")
    a.save_with_metadata({"v": 1}, "x")
    assert connect("memory://shared-test") is a
    assert connect("memory://") is not connect("memory://")
