"""Corrupted stored bytes are refused, on every backend, through tests/corruption.py.

- every single-bit flip of a stored 256-byte frame (2,048 flips) raises StateIntegrityError;
- random 1-2 byte flips, truncations and swapped payloads (another state's frame, or an older
  version's) on 1,000 stored states: 100% StateIntegrityError, no other exception, no hang;
- decompression bombs (zlib and LZ4 payloads that inflate far past what the header claims,
  a header claiming just under the cap, one claiming over it) are refused with the loading
  process's peak RSS growing by less than 64 MiB (VmHWM, measured per bomb in a fresh process).
"""

from __future__ import annotations

import multiprocessing
import random
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lz4.block
import pytest

from persistence import CompressionType, StateIntegrityError, StatePersistence, codec
from tests.conftest import BACKENDS
from tests.corruption import read_frame, write_frame
from tests.reliability._support import fresh_where, opened

MAX_LOAD_SECONDS = 2.0  # "no hang": a refused load is as quick as a good one


def _outcome(store: StatePersistence, sid: str, version: int | None = None) -> str:
    """``"integrity"`` for the expected refusal, else what happened instead."""
    started = time.monotonic()
    try:
        loaded = store.load_with_metadata(sid, version=version)
    except StateIntegrityError:
        outcome = "integrity"
    except Exception as exc:
        outcome = f"raised {type(exc).__name__}: {exc}"
    else:
        outcome = "returned data" if loaded is not None else "returned None"
    elapsed = time.monotonic() - started
    if elapsed > MAX_LOAD_SECONDS:
        outcome = f"took {elapsed:.1f}s ({outcome})"
    return outcome


def _state_of_frame_size(size: int) -> dict[str, str]:
    """A state whose uncompressed frame is exactly ``size`` bytes."""
    overhead = len(codec.dumps({"p": ""})) + 7  # JSON punctuation + the frame header
    return {"p": "".join(random.Random(size).choice("abcdefghij") for _ in range(size - overhead))}


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_2048_single_bit_flips_of_a_256_byte_frame_raise_integrity_error(
    make_store: Callable[..., StatePersistence],
) -> None:
    store = make_store(compression_type=CompressionType.NONE)
    state = _state_of_frame_size(256)
    store.save_with_metadata(state, "flip")
    frame = read_frame(store, "flip", 1)
    assert len(frame) == 256
    outcomes: dict[str, list[int]] = {}
    for bit in range(len(frame) * 8):
        damaged = bytearray(frame)
        damaged[bit // 8] ^= 1 << (bit % 8)
        write_frame(store, "flip", 1, bytes(damaged))
        outcomes.setdefault(_outcome(store, "flip"), []).append(bit)
    write_frame(store, "flip", 1, frame)
    loaded = store.load_with_metadata("flip")
    assert loaded is not None and loaded[0] == state  # the original bytes still load
    wrong = {kind: bits[:10] for kind, bits in outcomes.items() if kind != "integrity"}
    assert wrong == {}, f"flips not refused (outcome: first bits): {wrong}"
    assert len(outcomes["integrity"]) == 2048


STATES = 1000


def _flip(rng: random.Random, frame: bytes) -> bytes:
    damaged = bytearray(frame)
    for at in rng.sample(range(len(frame)), min(len(frame), rng.choice((1, 2)))):
        damaged[at] ^= rng.randrange(1, 256)
    return bytes(damaged)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_flips_truncations_and_swapped_payloads_on_1000_states_all_raise_integrity_error(
    make_store: Callable[..., StatePersistence],
) -> None:
    store = make_store()  # LZ4 above the threshold: a mix of compressed and plain frames
    rng = random.Random(20240607)
    ids = [f"c{i:04d}" for i in range(STATES)]
    for version in (1, 2):
        for start in range(0, STATES, 100):
            store.save_many(
                {
                    "state_id": sid,
                    "state": {
                        "id": sid,
                        "v": version,
                        "body": "".join(rng.choice("ab cd") for _ in range(rng.randrange(0, 600))),
                    },
                }
                for sid in ids[start : start + 100]
            )
    frames = {sid: read_frame(store, sid, 2) for sid in ids}
    kinds = ("flip", "truncate", "swap-state", "swap-version")
    outcomes: dict[tuple[str, str], list[str]] = {}
    for i, sid in enumerate(ids):
        kind, frame = kinds[i % 4], frames[sid]
        if kind == "flip":
            damaged = _flip(rng, frame)
        elif kind == "truncate":
            damaged = frame[: rng.randrange(0, len(frame))]
        elif kind == "swap-state":
            damaged = frames[ids[(i + 1 + rng.randrange(STATES - 1)) % STATES]]
        else:
            damaged = read_frame(store, sid, 1)
        write_frame(store, sid, 2, damaged)
        outcomes.setdefault((kind, _outcome(store, sid)), []).append(sid)
    wrong = {key: sids[:5] for key, sids in outcomes.items() if key[1] != "integrity"}
    assert wrong == {}, f"damaged states not refused ((kind, outcome): first ids): {wrong}"
    assert sum(len(v) for v in outcomes.values()) == STATES
    # Undamaged versions of the same states still load: the check is per version.
    loaded = store.load_with_metadata(ids[0], version=1)
    assert loaded is not None and loaded[0]["v"] == 1


# ------------------------------------------------------------------ decompression bombs

_HEADER = struct.Struct(">2sBI")
BOMB_LIMIT_BYTES = 64 * 1024 * 1024


def _bombs() -> dict[str, bytes]:
    cap = codec.DEFAULT_MAX_BYTES
    squeezer = zlib.compressobj(9)
    zeros = bytes(1 << 20)
    zlib_payload = b"".join(squeezer.compress(zeros) for _ in range(256)) + squeezer.flush()
    lz4_payload = bytes(lz4.block.compress(bytes(64 << 20), store_size=False))
    tiny = zlib.compress(b"{}")
    return {  # name -> frame; 256 MiB of zlib zeros, 64 MiB of LZ4 zeros
        "zlib bomb claiming 1 MiB": _HEADER.pack(codec.MAGIC, 2, 1 << 20) + zlib_payload,
        "zlib bomb claiming just under the cap": _HEADER.pack(codec.MAGIC, 2, cap - 1)
        + zlib_payload,
        "zlib bomb claiming over the cap": _HEADER.pack(codec.MAGIC, 2, 2**32 - 1) + zlib_payload,
        "lz4 bomb claiming just under the cap": _HEADER.pack(codec.MAGIC, 1, cap - 1) + lz4_payload,
        "lz4 frame claiming over the cap": _HEADER.pack(codec.MAGIC, 1, cap + 1) + lz4_payload,
        "plain frame claiming over the cap": _HEADER.pack(codec.MAGIC, 0, 2**32 - 1) + b"{}",
        "tiny zlib claiming just under the cap": _HEADER.pack(codec.MAGIC, 2, cap - 1) + tiny,
    }


def _load_bombs(backend: str, where: str, frames: dict[str, bytes], results: Any) -> None:
    """In a fresh process: store the bombs, then measure peak RSS growth while loading them."""
    import gc

    from tests.conftest import open_store

    store = open_store(backend, where)
    names = list(frames)
    for name in names:
        store.save_with_metadata({"name": name}, name)
        write_frame(store, name, 1, frames[name])
    store.save_with_metadata({"ok": True}, "good")
    assert store.load_with_metadata("good") is not None  # warm every code path once
    frames.clear()
    gc.collect()
    measured = {}
    for name in names:
        before = _reset_peak_rss()
        outcome = _outcome(store, name)
        measured[name] = (outcome, _peak_rss() - before)
        gc.collect()
    store.close()
    results.put(measured)


def _proc_status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise LookupError(field)


def _reset_peak_rss() -> int:
    """Reset this process's peak RSS (VmHWM) to its current RSS and return that.

    ru_maxrss cannot be used: it survives exec, so a spawned child starts with its parent's
    peak. Writing 5 to clear_refs resets VmHWM (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return _proc_status("VmRSS")


def _peak_rss() -> int:
    return _proc_status("VmHWM")


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_decompression_bombs_are_refused_with_under_64_mib_of_memory_growth(
    backend: str, tmp_path: Path
) -> None:
    frames = _bombs()
    where = fresh_where(backend, tmp_path)
    with opened(backend, where):  # checks the server is up; drops the data afterwards
        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        child = ctx.Process(target=_load_bombs, args=(backend, where, frames, results))
        child.start()
        try:
            measured = results.get(timeout=240)
        finally:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
    for name, (outcome, growth) in measured.items():
        print(f"\n{backend}: {name}: {outcome}, peak RSS +{growth / 2**20:.1f} MiB", end="")
    assert {n: o for n, (o, _) in measured.items() if o != "integrity"} == {}
    heavy = {n: f"{g / 2**20:.1f} MiB" for n, (_, g) in measured.items() if g >= BOMB_LIMIT_BYTES}
    assert heavy == {}, f"refusing these bombs grew peak RSS by 64 MiB or more: {heavy}"
