"""What only the SQLite backend has: its schema migrations on an existing file, and payloads
that something outside the store rewrote with another SQLite type."""

from __future__ import annotations

import gc
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from persistence import BackendUnavailableError, PersistenceError, StateIntegrityError, connect
from persistence.backends.sqlite import MIGRATIONS
from persistence.types import to_micros
from tests.conftest import FakeClock
from tests.corruption import damage_sqlite_pages


def test_a_file_from_before_rounded_write_times_is_upgraded_and_pages_by_time(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    clock = FakeClock()
    store = connect(f"sqlite:///{path}", clock=clock)
    ids = [f"s{i}" for i in range(7)]
    for sid in ids:
        clock.advance(0.001)
        store.save_with_metadata({"id": sid}, sid)
        store.create_checkpoint(sid, {"id": sid})
    store.close()
    # What schema 1 stored: the clock's raw reading, finer than a microsecond.
    raw = sqlite3.connect(path)
    with raw:
        raw.execute("UPDATE states SET updated_at = updated_at + 0.0000003")
        raw.execute("UPDATE versions SET created_at = created_at + 0.0000003")
        raw.execute("UPDATE checkpoints SET created_at = created_at + 0.0000003")
        raw.execute("PRAGMA user_version = 1")
    raw.close()

    store = connect(f"sqlite:///{path}", clock=clock)
    info = store.get_stats()["sqlite_info"]
    assert info["schema_version"] == len(MIGRATIONS)
    seen, cursor = [], None
    while True:
        page = store.page_states(order="-updated", cursor=cursor, limit=3)
        seen += [s.state_id for s in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ids[::-1]
    store.close()
    raw = sqlite3.connect(path)
    for table, column in (
        ("states", "updated_at"),
        ("versions", "created_at"),
        ("checkpoints", "created_at"),
    ):
        times = [t for (t,) in raw.execute(f"SELECT {column} FROM {table}")]
        assert len(times) == len(ids)
        assert times == [to_micros(t) for t in times], table
    raw.close()


@pytest.mark.parametrize("text", [b"\xff\xfe not UTF-8", b"plain text"])
def test_a_payload_rewritten_as_text_is_reported_corrupt(tmp_path: Path, text: bytes) -> None:
    """TEXT where a frame should be is corruption (StateIntegrityError), not an unavailable
    store: the driver would otherwise fail to decode it before the codec could check it."""
    path = tmp_path / "s.db"
    store = connect(f"sqlite:///{path}")
    store.save_with_metadata({"step": 1}, "run")
    store.save_with_metadata({"step": 2}, "run")
    checkpoint = store.create_checkpoint("run", {"step": 0})
    raw = sqlite3.connect(path)
    with raw:
        raw.execute("UPDATE versions SET payload = CAST(? AS TEXT) WHERE version = 2", (text,))
        raw.execute("UPDATE checkpoints SET payload = CAST(? AS TEXT)", (text,))
        assert raw.execute("SELECT typeof(payload) FROM checkpoints").fetchone() == ("text",)
    raw.close()
    with pytest.raises(StateIntegrityError, match="version 2 is corrupt"):
        store.load_with_metadata("run")
    with pytest.raises(StateIntegrityError):
        store.rollback("run", 2)
    with pytest.raises(StateIntegrityError):
        store.restore_checkpoint(checkpoint)
    loaded = store.load_with_metadata("run", version=1)
    assert loaded is not None and loaded[0] == {"step": 1}  # the rest of the store still reads


def _run_child(script: str, db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a Python of its own with ``db`` (and ``args``) as its arguments: a
    crash or a hang there fails only the test that asked for it."""
    return subprocess.run(
        [sys.executable, "-c", script, str(db), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )


_CLOSE_UNDER_LOAD = """
import sys, threading, time
from persistence import BackendUnavailableError, connect

store = connect("sqlite:///" + sys.argv[1])
outcomes = []

def work(n):
    try:
        while True:
            store.save_with_metadata({"n": n}, f"s{n}")
            store.load_with_metadata(f"s{n}")
            store.page_states(limit=5)
    except BackendUnavailableError as exc:
        outcomes.append("closed" if "was closed" in str(exc) else repr(exc))
    except BaseException as exc:
        outcomes.append(repr(exc))

threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
for thread in threads:
    thread.start()
time.sleep(0.3)
store.close()
for thread in threads:
    thread.join(10)
print(sorted(outcomes))
"""


def test_close_while_other_threads_are_mid_call_ends_them_cleanly(tmp_path: Path) -> None:
    """Closing a connection that another thread is running a statement on crashes CPython's
    sqlite3 (a segfault): close waits for each call in flight, and the calls after it are
    refused with the closed store's error. Run in a child so a crash fails only this test."""
    for attempt in range(3):  # the crash it guards against came in 3 of 3 runs with 4 threads
        child = _run_child(_CLOSE_UNDER_LOAD, tmp_path / f"close{attempt}.db")
        assert child.returncode == 0, child.stderr[-2000:]
        assert child.stdout.strip() == str(["closed"] * 4)


def test_url_options_are_applied_or_refused(tmp_path: Path) -> None:
    """A durability setting in the URL must not be dropped in silence."""
    url = f"sqlite:///{tmp_path}/opts.db"
    store = connect(f"{url}?synchronous=FULL&busy_timeout=2.5")
    assert (store.synchronous, store.busy_timeout) == ("FULL", 2.5)
    store.close()
    with pytest.raises(ValueError, match="unknown option 'sync'"):
        connect(f"{url}?sync=FULL")
    with pytest.raises(ValueError, match=r"busy_timeout .* not a number"):
        connect(f"{url}?busy_timeout=soon")
    with pytest.raises(ValueError, match="synchronous given both"):
        connect(f"{url}?synchronous=FULL", synchronous="OFF")


def test_a_directory_that_cannot_be_made_is_reported_as_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(BackendUnavailableError, match="cannot create the directory"):
        connect(f"sqlite:///{blocker}/state.db")


_INTERRUPTED_WHILE_WAITING_FOR_THE_LOCK = """
import signal, sqlite3, sys, threading
from persistence import connect

path, busy_timeout, release_after = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
store = connect("sqlite:///" + path, busy_timeout=busy_timeout)
store.save_with_metadata({}, "warm")
blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
blocker.execute("BEGIN IMMEDIATE")  # holds the write lock: the save waits for it
release = threading.Timer(release_after, lambda: blocker.execute("COMMIT"))
release.start()

def interrupt(signum, frame):
    raise KeyboardInterrupt

signal.signal(signal.SIGALRM, interrupt)
signal.setitimer(signal.ITIMER_REAL, 0.3)
try:
    store.save_with_metadata({}, "x")
except KeyboardInterrupt:
    pass
release.join()
other = sqlite3.connect(path, timeout=1, isolation_level=None)
other.execute("BEGIN IMMEDIATE")  # the write lock is free again
other.execute("ROLLBACK")
store.save_with_metadata({"after": True}, "x")
closer = threading.Thread(target=store.close)
closer.start()
closer.join(5)
print("closed" if not closer.is_alive() else "close() hangs")
"""


@pytest.mark.parametrize(
    ("busy_timeout", "release_after"),
    [(0.01, 0.5), (5, 0.6)],
    ids=["in-the-retry-sleep", "as-sqlite-grants-the-lock"],
)
def test_an_interrupt_while_waiting_for_the_write_lock_leaves_nothing_held(
    tmp_path: Path, busy_timeout: float, release_after: float
) -> None:
    """The interrupt lands in our retry sleep (a short busy_timeout) or as SQLite, waiting
    in C, grants the lock: either way no transaction stays open (every other writer would
    be locked out) and the connection is released (close() would hang)."""
    child = _run_child(
        _INTERRUPTED_WHILE_WAITING_FOR_THE_LOCK,
        tmp_path / "x.db",
        str(busy_timeout),
        str(release_after),
    )
    assert child.stdout.strip() == "closed", child.stderr[-2000:]


_CLOSE_IN_A_FORKED_CHILD = """
import os, signal, sys, threading
from persistence import connect

store = connect("sqlite:///" + sys.argv[1])
inside, release = threading.Event(), threading.Event()

def busy_thread():
    with store._conns.transaction():
        inside.set()
        release.wait()

thread = threading.Thread(target=busy_thread)
thread.start()
inside.wait()
pid = os.fork()
if pid == 0:  # the child: the busy thread does not exist here, its lock stays held
    signal.alarm(20)  # a hung child dies instead of outliving the test
    store.close()
    os._exit(0)
release.set()
thread.join()
_, status = os.waitpid(pid, 0)
print("child closed" if status == 0 else f"child status {status}")
"""


def test_close_in_a_forked_child_does_not_wait_for_the_parents_threads(tmp_path: Path) -> None:
    """The child has none of them, so a call one of them had in flight never ends there."""
    child = _run_child(_CLOSE_IN_A_FORKED_CHILD, tmp_path / "x.db")
    assert child.stdout.strip() == "child closed", child.stderr[-2000:]


_FORK_WHILE_A_THREAD_OPENS = """
import os, signal, sys, threading
from persistence import connect

store = connect("sqlite:///" + sys.argv[1])
store.save_with_metadata({"n": 1}, "s")
holding, release = threading.Event(), threading.Event()

def opening_thread():  # as a thread would hold it while it adds its new connection
    with store._conns._all_lock:
        holding.set()
        release.wait()

thread = threading.Thread(target=opening_thread)
thread.start()
holding.wait()
pid = os.fork()
if pid == 0:  # the child opens a connection of its own: it must not wait for that lock
    signal.alarm(20)  # a hung child dies instead of outliving the test
    loaded = store.load_with_metadata("s")
    os._exit(0 if loaded is not None and loaded[0] == {"n": 1} else 3)
release.set()
thread.join()
_, status = os.waitpid(pid, 0)
print("child loaded" if status == 0 else f"child status {status}")
"""


def test_a_fork_while_a_thread_holds_the_connection_list_does_not_hang_the_child(
    tmp_path: Path,
) -> None:
    child = _run_child(_FORK_WHILE_A_THREAD_OPENS, tmp_path / "x.db")
    assert child.stdout.strip() == "child loaded", child.stderr[-2000:]


def test_bad_busy_timeouts_are_refused(tmp_path: Path) -> None:
    for value in ("nan", "inf", "-1"):
        with pytest.raises(ValueError, match="busy_timeout must be a number of seconds"):
            connect(f"sqlite:///{tmp_path}/t.db?busy_timeout={value}")
    with pytest.raises(ValueError, match="synchronous is given twice"):
        connect(f"sqlite:///{tmp_path}/t.db?synchronous=FULL&synchronous=OFF")


def test_a_thread_that_ends_closes_its_connection(tmp_path: Path) -> None:
    """A server that starts a thread per request (runserver) must not keep one open file per
    request: a thread's connection goes with the thread."""
    store = connect(f"sqlite:///{tmp_path}/threads.db")
    store.save_with_metadata({}, "s")
    for _ in range(50):
        thread = threading.Thread(target=store.load_with_metadata, args=("s",))
        thread.start()
        thread.join()
    gc.collect()
    assert len(store._conns._all) <= 1  # type: ignore[attr-defined]  # the main thread's, if any
    assert store.load_with_metadata("s") is not None
    store.close()


def test_a_full_disk_is_reported_as_unavailable_and_writes_nothing(tmp_path: Path) -> None:
    store = connect(f"sqlite:///{tmp_path}/full.db")
    store.save_with_metadata({"v": 1}, "s")
    raw = sqlite3.connect(tmp_path / "full.db")
    pages = raw.execute("PRAGMA page_count").fetchone()[0]
    raw.close()
    store._conns.query(f"PRAGMA max_page_count = {pages}")  # type: ignore[attr-defined]
    with pytest.raises(BackendUnavailableError, match="full"):
        store.save_with_metadata({"big": os.urandom(200_000).hex()}, "s")
    loaded = store.load_with_metadata("s")
    assert loaded is not None and loaded[0] == {"v": 1} and loaded[1].version == 1
    store.close()


def test_a_damaged_file_raises_integrity_errors_not_sqlite3_errors(tmp_path: Path) -> None:
    """Pages overwritten by something outside the store (a disk fault, a bad copy) surface as
    StateIntegrityError naming the file, on reads and writes alike; sqlite3's own
    DatabaseError would reach callers who catch only statehub's errors."""
    path = tmp_path / "damaged.db"
    store = connect(f"sqlite:///{path}")
    store.save_many(
        [{"state_id": f"s{i}", "state": {"pad": "x" * 500}, "tags": ["t"]} for i in range(300)]
    )
    store.close()
    damage_sqlite_pages(path)
    store = connect(f"sqlite:///{path}")  # its page cache must not hold the old pages
    calls = {
        "load": lambda: store.load_with_metadata("s5"),
        "list": lambda: list(store.list_states()),
        "search": lambda: store.search_by_tags(["t"]),
        "save": lambda: store.save_with_metadata({"v": 1}, "s7"),
    }
    for name, call in calls.items():
        with pytest.raises(StateIntegrityError, match=r"damaged\.db is damaged") as caught:
            call()
        assert isinstance(caught.value.__cause__, sqlite3.DatabaseError), name
    store.close()


def test_a_damaged_first_page_is_reported_as_damage_not_as_a_store_that_is_down(
    tmp_path: Path,
) -> None:
    path = tmp_path / "headless.db"
    connect(f"sqlite:///{path}").close()
    with path.open("r+b") as raw:
        raw.write(b"\x5a" * 100)  # the header, where SQLite checks what the file is
    with pytest.raises(StateIntegrityError, match=r"headless\.db is damaged"):
        connect(f"sqlite:///{path}")


def test_errors_the_sqlite3_module_raises_itself_are_translated_too() -> None:
    """They carry no SQLite result code (a closed connection, a bad binding)."""
    from persistence.backends.sqlite_connections import translate

    error = translate(sqlite3.ProgrammingError("Cannot operate on a closed database."), "x.db")
    assert type(error) is PersistenceError and "closed database" in str(error)
