"""Shared pieces of the reliability suite: where a store lives, env-sized budgets, and
throwaway servers that the fault tests may kill (never the shared ones on 6379 / 5432)."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from persistence import BackendUnavailableError, StatePersistence
from tests.conftest import drop_store, missing, open_store, server_missing

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def env_number(name: str, ci_default: float, local_default: float) -> float:
    """An env-sized budget: ``name`` if set, else the CI figure under CI, else a local one."""
    raw = os.environ.get(name)
    if raw:
        return float(raw)
    return ci_default if in_ci() else local_default


def hypothesis_examples(ci_default: int = 2000, local_default: int = 200) -> int:
    return int(env_number("STATEHUB_HYPOTHESIS_EXAMPLES", ci_default, local_default))


def where_of(store: StatePersistence) -> str:
    """The ``where`` that ``open_store`` needs to reopen this store from another process."""
    for attribute in ("path", "namespace", "schema"):
        value = getattr(store, attribute, None)
        if isinstance(value, str):
            return value
    raise TypeError(f"no place known for {store!r}")


def fresh_where(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return str(tmp_path / f"r{uuid.uuid4().hex[:8]}.db")
    return f"r{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def opened(backend: str, where: str, **options: Any) -> Iterator[StatePersistence]:
    """``open_store`` for the length of a ``with``, skipping (locally) when a server is down;
    the store's data is dropped afterwards."""
    try:
        store = open_store(backend, where, **options)
    except ConnectionError as exc:
        server_missing(backend, exc)
    try:
        yield store
    finally:
        store.close()
        drop_store(backend, where)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayRedis:
    """A redis-server of our own on a free port with its own --dir, safe to SIGKILL/SIGSTOP."""

    def __init__(self, directory: Path, *extra: str) -> None:
        if not os.path.exists(REDIS_SERVER):
            missing("redis-server is not installed")
        self.directory = directory
        self.port = free_port()
        self.args = [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(directory),
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(directory / "redis.log"),
            *extra,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> float:
        """Start the server; returns the monotonic time at which it answered PING."""
        import redis

        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            while True:
                with contextlib.suppress(redis.RedisError):
                    if client.ping():
                        return time.monotonic()
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"throwaway redis on {self.port} did not come up")
                time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)


class RetryingWriter(threading.Thread):
    """Saves to random ``states`` until ``stop``, as a careful client does under faults: each
    write keeps its write_id and is retried on BackendUnavailableError until acknowledged, for
    up to ``give_up`` seconds. Records acks (write_id, state, version, at), failed attempts
    (error type, seconds taken, at) and anything else raised (which ends the thread)."""

    def __init__(
        self,
        store: StatePersistence,
        number: int,
        stop: threading.Event,
        states: list[str],
        give_up: float = 60.0,
    ) -> None:
        super().__init__(daemon=True)
        self.store, self.number, self.stop = store, number, stop
        self.states, self.give_up = states, give_up
        self.acks: list[tuple[str, str, int, float]] = []
        self.errors: list[tuple[str, float, float]] = []
        self.unexpected: list[BaseException] = []

    def run(self) -> None:
        rng = random.Random(self.number)
        n = 0
        while not self.stop.is_set():
            n += 1
            sid, write_id = rng.choice(self.states), f"w{self.number}-{n}"
            state = {"write_id": write_id, "pad": "x" * rng.randrange(0, 2000)}
            deadline = time.monotonic() + self.give_up
            while True:
                started = time.monotonic()
                try:
                    meta = self.store.save_with_metadata(
                        state, sid, tags=[f"t{n % 3}"], write_id=write_id
                    )
                except BackendUnavailableError as exc:  # OutcomeUnknownError included
                    now = time.monotonic()
                    self.errors.append((type(exc).__name__, now - started, now))
                    if now > deadline:
                        self.unexpected.append(exc)
                        return
                    time.sleep(0.01)
                    continue
                except BaseException as exc:
                    self.unexpected.append(exc)
                    return
                self.acks.append((write_id, sid, meta.version, time.monotonic()))
                break
