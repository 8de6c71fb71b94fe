"""Redis backend: every key of a state under one hash tag, every write one Lua script.

Layout and invariants are drawn at the top of ``redis_lua/common.lua``; the scripts beside it
do all the work server-side, so a save, a page and a search each cost one round trip, and a
load of the latest version is one plain HMGET (its frame is kept under a fixed field: a script
call costs tens of microseconds more than a plain command).
Expiry is twofold: ``expires_at`` (store clock) decides what reads see, and native
``PEXPIREAT`` lets Redis reclaim the keys itself; ``purge_expired`` then cleans the global
indexes. Counters in ``{ns}:{_}:stats`` are kept by the scripts instead of scanning: the
state count is always exact, the version and byte figures are exact once expired states are
purged (``get_stats`` subtracts up to 10,000 unpurged ones itself).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.connection import parse_url
from redis.exceptions import AuthenticationError, NoScriptError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import HIREDIS_AVAILABLE

from persistence import validation as check
from persistence.backends.redis_connections import (
    IdleConnections,
    PoolConnections,
    PooledConnection,
    pool_exhausted,
)
from persistence.errors import (
    BackendUnavailableError,
    OutcomeUnknownError,
    PersistenceError,
    VersionConflictError,
)
from persistence.registry import redact_url
from persistence.sizes import ByteCount
from persistence.store import (
    CheckpointRow,
    ReadResult,
    StatePersistence,
    VersionRow,
    WriteRequest,
)
from persistence.types import CompressionType, StateSummary, from_timestamp

# Only a hiredis that redis-py itself uses: with an older one it packs in Python, honouring
# the connection's encoding, and so must we.
_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None = None
if HIREDIS_AVAILABLE:
    from hiredis import pack_command as _hiredis_pack

log = logging.getLogger(__name__)
SEP = "\x1f"  # validation forbids control characters in ids, tags and write ids
_BSEP = b"\x1f"
_LATEST = ["cur", "exp", "F", "M", "T"]  # the fields a load of the latest version reads
_LUA_DIR = Path(__file__).with_name("redis_lua")


def _script(*parts: str) -> tuple[str, str]:
    """(sha1, text) of the script made of ``redis_lua/<part>.lua`` files, in order."""
    text = "".join((_LUA_DIR / f"{part}.lua").read_text() for part in parts)
    return hashlib.sha1(text.encode()).hexdigest(), text


# Reads carry only the small common prelude: its cost is paid on every call.
SAVE = _script("common", "writes", "save")
READ = _script("common", "read")
VERSIONS = _script("common", "versions")
DELETE = _script("common", "writes", "delete")
SELECT = _script("common", "select")
MAINTAIN = _script("common", "writes", "maintain")
CHECKPOINT = _script("common", "writes", "checkpoint")
COUNTS = _script("common", "writes", "counts")


def _translate_error(exc: RedisError, *, sent_write: bool = False) -> PersistenceError:
    """The one boundary where redis-py errors become ours (callers chain with ``from``)."""
    if isinstance(exc, ResponseError):
        text = str(exc)
        if text.startswith("STATEHUB_CONFLICT "):
            _, requested, latest, state_id = text.split(" ", 3)
            return VersionConflictError(state_id, int(requested), int(latest))
        return PersistenceError(f"Redis refused the command: {text}")
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        if sent_write:
            return OutcomeUnknownError(
                f"the connection to Redis failed after a write was sent, so it may or may not "
                f"have been applied; retry with the same write_id ({exc})"
            )
        if pool_exhausted(exc):
            return BackendUnavailableError(
                f"no Redis connection came free within pool_timeout (max_connections are all "
                f"in use): {exc}"
            )
        if isinstance(exc, AuthenticationError):  # a ConnectionError to redis-py
            return BackendUnavailableError(f"Redis refused the login: {exc}")
        return BackendUnavailableError(f"Redis is unreachable: {exc}")
    return PersistenceError(f"Redis error: {exc}")


@contextmanager
def _boundary() -> Iterator[None]:
    try:
        yield
    except RedisError as exc:
        raise _translate_error(exc) from exc


MIN_SERVER_VERSION = (6, 2)  # the listing script cuts id ranges with ZRANGESTORE


def _put(io: PooledConnection, command: tuple[Any, ...]) -> None:
    """Send one command. hiredis packs it in C; redis-py's packer checks every argument in
    Python first and then calls hiredis anyway (3 µs more a save). Without hiredis, redis-py's."""
    if _hiredis_pack is None:
        io.send_command(*command)
    else:
        io.send_packed_command([_hiredis_pack(command)])


def _check_server_version(version: str, url: str) -> None:
    """Refuse, at construction, a server too old to run the scripts (rather than fail on the
    first listing); a version that does not parse (a compatible fork) is given the benefit."""
    parts = version.split(".")
    try:
        found = (int(parts[0]), int(parts[1]))
    except (IndexError, ValueError):
        return
    if found < MIN_SERVER_VERSION:
        need = ".".join(map(str, MIN_SERVER_VERSION))
        raise BackendUnavailableError(
            f"Redis at {url} is version {version}; statehub needs Redis {need} or later"
        )


def _warn_if_evicting(policy: str, url: str) -> None:
    """Say at construction that a server which evicts under memory pressure can drop states:
    a state's keys may go before its TTL (or, under allkeys-*, without one) and its listing
    entries stay until a purge. Not refused: the server may never reach its maxmemory."""
    if policy != "noeviction":
        log.warning(
            "Redis at %s evicts keys under memory pressure (maxmemory-policy %s): states may "
            "vanish before their TTL; run it with maxmemory-policy noeviction",
            url,
            policy,
        )


def _tags(joined: bytes | None) -> tuple[str, ...]:
    return tuple(joined.decode().split(SEP)) if joined else ()


def _parse_url(url: str, shown: str) -> dict[str, Any]:
    """redis-py's reading of ``url``, with the mistakes it would let through (or report only
    as a driver error on the first call) refused as a ValueError naming them; ``shown`` is the
    URL with its password hidden."""
    parts = urlsplit(url)
    try:
        parsed: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ValueError(f"invalid Redis URL {shown!r}: {exc}") from exc
    database = parts.path.strip("/")
    if parts.scheme in ("redis", "rediss") and database and not database.isdigit():
        # redis-py would quietly use database 0
        raise ValueError(
            f"invalid Redis URL {shown!r}: the path must be a database number, such as /0"
        )
    if parsed.get("decode_responses"):
        raise ValueError(
            f"invalid Redis URL {shown!r}: the store reads bytes, so decode_responses cannot be set"
        )
    return parsed


class RedisStatePersistence(StatePersistence):
    """A store in Redis (redis-py with hiredis); ``redis_options`` go to its ConnectionPool."""

    backend_type = "redis"

    def __init__(
        self,
        redis_url: str = "redis://localhost:6379/0",
        redis_options: dict[str, Any] | None = None,
        *,
        namespace: str = "statehub",
        pool_timeout: float | None = 30.0,
        **common_options: Any,
    ) -> None:
        super().__init__(**common_options)
        if not isinstance(redis_url, str):
            raise TypeError(f"redis_url must be a str, not {type(redis_url).__name__}")
        if redis_options is not None and not isinstance(redis_options, Mapping):
            raise TypeError(f"redis_options must be a dict, not {type(redis_options).__name__}")
        if pool_timeout is not None:  # None: wait for a connection for as long as it takes
            pool_timeout = check.seconds(pool_timeout, "pool_timeout")
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be a str, not {type(namespace).__name__}")
        if not namespace or any(c in namespace for c in "{}*?[]") or not namespace.isprintable():
            raise ValueError(
                f"namespace must be printable, without braces or glob characters "
                f"(got {namespace!r})"
            )
        self.namespace = namespace
        self._closed = False
        self._global = f"{namespace}:{{_}}:"
        self._url = redact_url(redis_url)
        # Frames are bytes: whatever the caller asks for, replies must not be decoded.
        options = {**(redis_options or {}), "decode_responses": False}
        self._idle: IdleConnections | PoolConnections
        in_url = _parse_url(redis_url, self._url)
        bounded = {**options, **in_url}.get("max_connections") is not None  # the URL wins
        if not bounded:
            self._pool = redis.ConnectionPool.from_url(redis_url, **options)
            self._idle = IdleConnections(self._pool)
        else:
            # Bounded: a call waits its turn for a connection (redis-py's plain pool fails the
            # call at once), and every connection goes back to the pool it waits on.
            self._pool = redis.BlockingConnectionPool.from_url(
                redis_url, **{"timeout": pool_timeout, **options}
            )
            self._idle = PoolConnections(self._pool)
        self._client = redis.Redis(connection_pool=self._pool)
        try:
            with _boundary():
                info = self._pooled().info()  # its default sections: server and memory
            _check_server_version(str(info.get("redis_version", "")), self._url)
            _warn_if_evicting(str(info.get("maxmemory_policy", "noeviction")), self._url)
        except BackendUnavailableError:
            self._pool.disconnect()
            raise
        except TypeError as exc:  # an option redis-py's connections do not take
            self._pool.disconnect()
            raise ValueError(
                f"invalid option in the Redis URL {self._url!r} or redis_options: {exc}"
            ) from exc

    # -- the round trip every script call makes

    def _eval(
        self,
        script: tuple[str, str],
        keys: Sequence[str],
        now: float,
        args: Sequence[Any] = (),
        *,
        write: bool = False,
    ) -> Any:
        sha, text = script
        command = ("EVALSHA", sha, len(keys), *keys, self.namespace, repr(now), *args)
        return self._send(command, script=text, write=write)

    def _send(self, command: tuple[Any, ...], *, script: str = "", write: bool = False) -> Any:
        """One command, one round trip, driver errors translated."""
        if self._closed:
            raise self._closed_error()
        try:
            io = self._idle.get()
        except RedisError as exc:  # nothing was sent: the server is just unreachable
            raise _translate_error(exc) from exc
        try:
            try:
                _put(io, command)
                return io.read_response()
            except NoScriptError:
                # Redis restarted or its script cache was flushed; the script did not run.
                _put(io, ("SCRIPT", "LOAD", script))
                io.read_response()
                _put(io, command)
                return io.read_response()
        except RedisError as exc:
            raise _translate_error(exc, sent_write=write) from exc
        except BaseException:
            io.disconnect()  # interrupted (a signal) between send and reply: the reply may come
            raise
        finally:
            self._idle.put(io)

    def _pooled(self) -> redis.Redis:
        """The redis-py client, for calls that need its reply parsing or pipelines."""
        if self._closed:
            raise self._closed_error()
        self._idle.release_all()
        return self._client

    def _command(self, *args: Any) -> Any:
        return self._pooled().execute_command(*args)  # type: ignore[no-untyped-call]

    def _key(self, kind: str, state_id: str) -> str:
        (key,) = self._keys(state_id, kind)
        return key

    def _keys(self, state_id: str, *kinds: str) -> list[str]:
        # A hash of the id is the hash tag, so ids containing braces cannot move any key of
        # the state to another cluster slot; the id itself follows to keep keys unique.
        tag = hashlib.sha1(state_id.encode()).hexdigest()[:16]
        return [f"{self.namespace}:{{{tag}}}:{kind}:{state_id}" for kind in kinds]

    @staticmethod
    def _row(
        state_id: str,
        version: bytes,
        exp: bytes,
        frame: bytes | None,
        meta: bytes,
        tags: bytes | None,
    ) -> VersionRow:
        size, orig, created, comp, checksum, ttl, wid, metadata = meta.split(_BSEP, 7)
        return VersionRow(
            state_id=state_id,
            version=int(version),
            created_at=float(created),
            frame=frame or b"",
            size_bytes=int(size),
            original_size=int(orig),
            compression=comp.decode(),
            checksum=checksum.decode(),
            tags=_tags(tags),
            ttl_seconds=int(ttl) if ttl else None,
            expires_at=float(exp) if exp else None,
            metadata=metadata.decode(),
            write_id=wid.decode() or None,
        )

    # -- writes

    def _write(self, requests: Sequence[WriteRequest], now: float) -> list[VersionRow]:
        keys: list[str] = []
        args: list[Any] = []
        for request in requests:
            row = request.row
            sid = row.state_id
            keys += self._keys(sid, "h", "z")
            meta = (
                f"{row.size_bytes}{SEP}{row.original_size}{SEP}{row.created_at!r}"
                f"{SEP}{row.compression}{SEP}{row.checksum}{SEP}{row.ttl_seconds or ''}"
                f"{SEP}{row.write_id or ''}{SEP}{row.metadata}"
            )
            args += (
                sid,
                row.version,
                request.keep or 0,
                int(request.inherit_tags),
                row.write_id or "",
                "" if row.expires_at is None else repr(row.expires_at),
                row.frame,
                meta,
                SEP.join(row.tags),
            )
        reply = self._eval(SAVE, keys, now, args, write=True)
        out = []
        for request, (version, exp, meta, tags) in zip(requests, reply, strict=True):
            if meta is None:  # written now
                row = request.row
                row.version = int(version)
                if request.inherit_tags:
                    row.tags = _tags(tags)
                out.append(row)
            else:  # a retry of a write_id: the version the first attempt wrote
                out.append(self._row(request.state_id, version, exp, None, meta, tags))
        return out

    def _delete_version(self, state_id: str, version: int, now: float) -> bool:
        return self._delete(state_id, str(version), now)

    def _delete_state(self, state_id: str, now: float) -> bool:
        return self._delete(state_id, "", now)

    def _delete(self, state_id: str, version: str, now: float) -> bool:
        keys = self._keys(state_id, "h", "z", "c")
        return bool(self._eval(DELETE, keys, now, [version, state_id], write=True))

    # -- reads

    def _read(self, state_id: str, version: int | None, now: float) -> ReadResult:
        if version is None:  # the hot path: a plain HMGET costs less than any script
            reply = self._send(("HMGET", self._key("h", state_id), *_LATEST))
            row = self._latest(state_id, reply, now)
            return ReadResult(row)
        (found,) = self._eval(READ, [self._key("h", state_id)], now, [version])
        if not found:
            return ReadResult(None)
        if len(found) == 1:
            return ReadResult(None, int(found[0]))
        return ReadResult(self._row(state_id, *found[1:]), int(found[0]))

    def _latest(self, state_id: str, reply: list[bytes | None], now: float) -> VersionRow | None:
        cur, exp, frame, meta, tags = reply
        if cur is None or meta is None or (exp and float(exp) <= now):
            return None
        return self._row(state_id, cur, exp or b"", frame, meta, tags)

    def _read_many(self, state_ids: Sequence[str], now: float) -> dict[str, VersionRow]:
        with _boundary():
            pipe = self._pooled().pipeline(transaction=False)
            for sid in state_ids:
                pipe.hmget(self._key("h", sid), _LATEST)
            replies = pipe.execute()
        rows = {
            sid: self._latest(sid, reply, now)
            for sid, reply in zip(state_ids, replies, strict=True)
        }
        return {sid: row for sid, row in rows.items() if row is not None}

    def _versions(self, state_id: str, now: float) -> list[VersionRow]:
        keys = self._keys(state_id, "h", "z")
        reply = self._eval(VERSIONS, keys, now)
        if not reply:
            return []
        exp = reply[0]
        return [
            self._row(state_id, reply[i], exp, None, reply[i + 1], reply[i + 2])
            for i in range(1, len(reply), 3)
        ]

    def _select(
        self,
        mode: str,
        order: str,
        prefix: str | None,
        tags: Sequence[str],
        match: str,
        after: tuple[Any, str] | None,
        limit: int,
        now: float,
    ) -> Any:
        lo, hi, key, after_id = b"-", b"+", "", ""
        if prefix is not None:
            lo, hi = b"[" + prefix.encode(), b"[" + prefix.encode() + b"\xff"
        if after is not None and "updated" in order:  # the base class checked it: a float
            key, after_id = repr(after[0]), after[1]
        elif after is not None:
            # UTF-8 byte order is code point order, so bytes compare as the ids do.
            sid = after[1].encode()
            if order == "-id":
                hi = b"(" + sid if hi == b"+" or sid < hi[1:] else hi
            elif lo == b"-" or sid >= lo[1:]:
                lo = b"(" + sid
        args = [mode, order, lo, hi, key, after_id, prefix or "", match, limit, *tags]
        return self._eval(SELECT, [], now, args)

    def _list_ids(self, prefix: str | None, after: str | None, limit: int, now: float) -> list[str]:
        cursor = None if after is None else (after, after)
        return [
            sid.decode() for sid in self._select("ids", "id", prefix, (), "all", cursor, limit, now)
        ]

    def _page(
        self,
        prefix: str | None,
        tags: tuple[str, ...],
        match: str,
        order: str,
        after: tuple[Any, str] | None,
        limit: int,
        now: float,
    ) -> list[StateSummary]:
        flat = self._select("page", order, prefix, tags, match, after, limit, now)
        out = []
        for i in range(0, len(flat), 2):
            cur, count, created, size, orig, comp, exp, _, _, joined = flat[i + 1].split(_BSEP, 9)
            out.append(
                StateSummary(
                    state_id=flat[i].decode(),
                    latest_version=int(cur),
                    version_count=int(count),
                    updated_at=datetime.fromtimestamp(float(created), UTC),
                    size_bytes=int(size),
                    original_size=int(orig),
                    compression_type=CompressionType(comp.decode()),
                    tags=_tags(joined),
                    expires_at=from_timestamp(float(exp)) if exp else None,
                )
            )
        return out

    def _search(
        self, tags: tuple[str, ...], match: str, limit: int, now: float
    ) -> list[VersionRow]:
        flat = self._select("search", "id", None, tags, match, None, limit, now)
        return [
            self._row(flat[i].decode(), flat[i + 1], flat[i + 2], None, flat[i + 3], flat[i + 4])
            for i in range(0, len(flat), 5)
        ]

    def _tag_counts(self, limit: int, now: float) -> list[tuple[str, int]]:
        # Scores are minus the counts, so Redis's (score, member) order is ours.
        with _boundary():
            pairs = self._command("ZRANGE", self._global + "tags", 0, limit - 1, "WITHSCORES")
        return [(tag.decode(), -int(score)) for tag, score in pairs]

    # -- checkpoints

    def _put_checkpoint(self, row: CheckpointRow) -> None:
        packed = f"{row.created_at!r}{SEP}{row.checksum}{SEP}{row.metadata}"
        args = ["put", row.checkpoint_id, row.state_id, packed, row.frame]
        self._eval(CHECKPOINT, [self._key("c", row.state_id)], self.clock(), args, write=True)

    def _get_checkpoint(self, checkpoint_id: str) -> CheckpointRow | None:
        found = self._eval(CHECKPOINT, [], self.clock(), ["get", checkpoint_id])
        if not found or found[1] is None:
            return None
        return _checkpoint(checkpoint_id, found[0].decode(), found[1], found[2])

    def _list_checkpoints(self, state_id: str) -> list[CheckpointRow]:
        with _boundary():
            fields: dict[bytes, bytes] = self._command("HGETALL", self._key("c", state_id))
        rows = [
            (fields[b"m" + cid].rsplit(_BSEP, 1)[1], cid, frame)
            for cid, frame in fields.items()
            if len(cid) == 32
        ]
        made = [
            (int(seq), _checkpoint(cid.decode(), state_id, frame, fields[b"m" + cid]))
            for seq, cid, frame in rows
        ]
        return [row for _, row in sorted(made, key=lambda x: (x[1].created_at, x[0]))]

    def _delete_checkpoint(self, checkpoint_id: str) -> bool:
        args = ["del", checkpoint_id]
        return bool(self._eval(CHECKPOINT, [], self.clock(), args, write=True))

    # -- maintenance and stats

    def _purge(self, limit: int, now: float) -> int:
        return int(self._eval(MAINTAIN, [], now, ["purge", limit], write=True))

    def _prune(self, keep: int, limit: int, now: float) -> int:
        return int(self._eval(MAINTAIN, [], now, ["prune", limit, keep], write=True))

    def _counts(self, now: float) -> dict[str, int]:
        states, versions, checkpoints, stored, original = self._eval(COUNTS, [], now)
        return {
            "states": states,
            "versions": versions,
            "checkpoints": checkpoints,
            "stored_bytes": stored,
            "original_bytes": original,
        }

    def _server_info(self) -> dict[str, Any]:
        with _boundary():
            # Every default section (server, clients, memory, stats, keyspace...): Redis before
            # 7.0 takes only one section name, or none.
            info = self._pooled().info()
        keyspace = {k: v for k, v in info.items() if k.startswith("db") and isinstance(v, dict)}
        fields = (
            "redis_version",
            "uptime_in_seconds",
            "used_memory",
            "used_memory_human",
            "used_memory_peak_human",
            "connected_clients",
            "total_commands_processed",
            "instantaneous_ops_per_sec",
            "keyspace_hits",
            "keyspace_misses",
            "expired_keys",
            "evicted_keys",
            "maxmemory_policy",
        )
        figures = {name: info[name] for name in fields if name in info}
        if "used_memory" in figures:
            figures["used_memory"] = ByteCount(figures["used_memory"])
        return {"redis_info": {**figures, "keyspace": keyspace, "namespace": self.namespace}}

    # -- lifecycle

    def close(self) -> None:
        # redis-py would reconnect on the next call: the flag makes a closed store refuse it.
        self._closed = True
        self._idle.release_all()
        self._pool.disconnect()

    def describe(self) -> str:
        return self._url


def _checkpoint(checkpoint_id: str, state_id: str, frame: bytes, packed: bytes) -> CheckpointRow:
    created, checksum, rest = packed.split(_BSEP, 2)
    return CheckpointRow(
        checkpoint_id=checkpoint_id,
        state_id=state_id,
        created_at=float(created),
        frame=frame,
        checksum=checksum.decode(),
        metadata=rest.rsplit(_BSEP, 1)[0].decode(),
    )
