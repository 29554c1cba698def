"""Pool benchmark: the Rust `tub` crate's benchmark, in Python.

A pool of P objects; N tasks are spawned at once and each acquires one object, holds it across
one ``await asyncio.sleep(0)`` ("hold") or gives it back at once ("release"), and the run waits
for all of them with ``asyncio.gather``. Reported: total wall time / N as ns per
acquire/release, and the ratio to the floor, which is the same tasks with no pool at all.

Every run checks exclusivity: each object carries a holder flag and a task that acquires an
object already held raises. Every task must complete and the pool must end with all its objects
idle; otherwise the process exits 1.

Run from the repository root (see benchmarks/README.md, section "Pool")::

    python -m benchmarks.pool_bench --tasks 10000,100000 --sizes 1,16 --loops asyncio,uvloop
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import uvloop
from asyncio_connection_pool import ConnectionPool, ConnectionStrategy
from connpool import AsyncConnectionPool, PoolConfig

import resolver.pool as pool_module
from benchmarks.harness import rotated
from resolver.pool import Pool

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}
VARIANTS = ("hold", "release")
OURS = "resolver.pool.Pool"
FLOOR = "floor (no pool)"
# The configuration the pool is built for: ours at most TARGET_RATIO x the floor there, and
# faster than every other pool in the table.
TARGET = ("uvloop", 1, 100_000, "hold")
TARGET_RATIO = 1.5


class ExclusivityError(Exception):
    """A task acquired an object that another task still held."""


class Obj:
    """A pooled object: only a holder flag, so the pool's own cost is what is measured."""

    __slots__ = ("held", "ident")

    def __init__(self, ident: int) -> None:
        self.ident = ident
        self.held = False


Worker = Callable[[], Coroutine[Any, Any, bool]]


@dataclass(slots=True)
class Setup:
    """One implementation, built inside the running loop for one measurement."""

    worker: Worker  # the body of one task; returns True when it completes
    idle: Callable[[], int]  # objects idle in the pool, by the pool's own accounting
    close: Callable[[], Awaitable[None]]


Factory = Callable[[list[Obj], bool], Awaitable[Setup]]

# Each worker below repeats the same body inline (check and set the flag, maybe sleep(0), clear
# it) rather than calling a shared helper: a helper coroutine would add its own cost, ~10% of
# the floor, to every implementation and blur the differences this benchmark is after.


async def _noop() -> None:
    return None


async def setup_floor(objs: list[Obj], hold: bool) -> Setup:
    sleep = asyncio.sleep

    async def worker() -> bool:
        if hold:
            await sleep(0)
        return True

    return Setup(worker, lambda: len(objs), _noop)


async def setup_queue(objs: list[Obj], hold: bool) -> Setup:
    queue: asyncio.Queue[Obj] = asyncio.Queue()
    for obj in objs:
        queue.put_nowait(obj)
    get, put, sleep = queue.get, queue.put_nowait, asyncio.sleep

    async def worker() -> bool:
        obj = await get()
        try:
            if obj.held:
                raise ExclusivityError(obj.ident)
            obj.held = True
            if hold:
                await sleep(0)
            obj.held = False
        finally:
            put(obj)
        return True

    return Setup(worker, queue.qsize, _noop)


async def setup_semaphore(objs: list[Obj], hold: bool) -> Setup:
    semaphore = asyncio.Semaphore(len(objs))
    free = list(objs)
    sleep = asyncio.sleep

    async def worker() -> bool:
        async with semaphore:
            obj = free.pop()
            try:
                if obj.held:
                    raise ExclusivityError(obj.ident)
                obj.held = True
                if hold:
                    await sleep(0)
                obj.held = False
            finally:
                free.append(obj)
        return True

    def idle() -> int:
        return min(len(free), semaphore._value)

    return Setup(worker, idle, _noop)


class _GivenObjects(ConnectionStrategy[Obj]):
    """Hands out the benchmark's objects instead of opening connections."""

    def __init__(self, objs: list[Obj]) -> None:
        self.spare = list(objs)
        self.closed: list[Obj] = []

    async def make_connection(self) -> Obj:
        return self.spare.pop()

    def connection_is_closed(self, conn: Obj) -> bool:
        return False

    async def close_connection(self, conn: Obj) -> None:
        self.closed.append(conn)  # only on burst overflow, which max_size=P never reaches


async def setup_acp(objs: list[Obj], hold: bool) -> Setup:
    pool = ConnectionPool(strategy=_GivenObjects(objs), max_size=len(objs))
    # Connections are made lazily; take every one once so the timed run starts with a full pool.
    async with contextlib.AsyncExitStack() as stack:
        for _ in objs:
            await stack.enter_async_context(pool.get_connection())
    get_connection, sleep = pool.get_connection, asyncio.sleep

    async def worker() -> bool:
        async with get_connection() as obj:
            if obj.held:
                raise ExclusivityError(obj.ident)
            obj.held = True
            if hold:
                await sleep(0)
            obj.held = False
        return True

    def idle() -> int:
        return pool.available.qsize() if pool.in_use == 0 else -pool.in_use

    return Setup(worker, idle, _noop)


async def setup_connpool(objs: list[Obj], hold: bool) -> Setup:
    # Everything that would cost time on a fake object is off: no acquire timeout (100,000
    # waiters on one object would hit the default 30 s), no lifetime, idle or validation
    # checks, no maintenance task, no breaker.
    config = PoolConfig(
        min_size=len(objs),
        max_size=len(objs),
        acquire_timeout=None,
        max_lifetime=None,
        max_idle_time=None,
        validate_after_idle=None,
        maintenance_interval=None,
        breaker=None,
    )
    spare = list(objs)
    pool: AsyncConnectionPool[Obj] = AsyncConnectionPool.from_callables(
        spare.pop, close=lambda obj: None, config=config
    )
    await pool.open()  # creates min_size = P objects up front
    connection, sleep = pool.connection, asyncio.sleep

    async def worker() -> bool:
        async with connection() as obj:
            if obj.held:
                raise ExclusivityError(obj.ident)
            obj.held = True
            if hold:
                await sleep(0)
            obj.held = False
        return True

    def idle() -> int:
        stats = pool.stats()
        return stats.idle if stats.in_use == 0 and stats.waiting == 0 else -1

    return Setup(worker, idle, pool.close)


async def setup_ours(objs: list[Obj], hold: bool) -> Setup:
    pool = Pool(objs)
    acquire, sleep = pool.acquire, asyncio.sleep

    async def worker() -> bool:
        async with acquire() as obj:
            if obj.held:
                raise ExclusivityError(obj.ident)
            obj.held = True
            if hold:
                await sleep(0)
            obj.held = False
        return True

    def idle() -> int:
        stats = pool.statistics()
        return stats.idle if stats.in_use == 0 and stats.waiting == 0 else -1

    return Setup(worker, idle, pool.aclose)


IMPLS: dict[str, Factory] = {
    FLOOR: setup_floor,
    "asyncio.Queue": setup_queue,
    "asyncio.Semaphore + list": setup_semaphore,
    "asyncio-connection-pool": setup_acp,
    "connpool": setup_connpool,
    OURS: setup_ours,
}


@dataclass(frozen=True, slots=True)
class Config:
    loop: str
    size: int
    tasks: int
    variant: str

    def __str__(self) -> str:
        return f"{self.loop} | pool of {self.size} | {self.tasks:,} tasks | {self.variant}"


@dataclass(slots=True)
class Result:
    best_ns: float = float("inf")
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Options:
    repeat: int  # best of this many runs
    limit: float  # seconds before one run counts as failed
    collect: bool  # keep the cyclic garbage collector running while timing


async def measure(factory: Factory, config: Config, options: Options) -> float:
    """Time one run; return ns per task. Raises AssertionError naming what went wrong."""
    objs = [Obj(i) for i in range(config.size)]
    setup = await factory(objs, config.variant == "hold")
    loop = asyncio.get_running_loop()
    create_task, worker, tasks = loop.create_task, setup.worker, config.tasks
    gc.collect()
    if not options.collect:
        # As timeit does: at 100,000 live tasks the collector's full passes cost more than the
        # tasks themselves, and they would drown the pool's own cost in the ratio.
        gc.disable()
    try:
        async with asyncio.timeout(options.limit):
            start = time.perf_counter()
            spawned = [create_task(worker()) for _ in range(tasks)]
            results = await asyncio.gather(*spawned, return_exceptions=True)
            elapsed = time.perf_counter() - start
    except TimeoutError:
        raise AssertionError(f"did not finish within {options.limit:g} s") from None
    finally:
        gc.enable()
        idle = setup.idle()
        await setup.close()
    violations = sum(isinstance(r, ExclusivityError) for r in results)
    completed = sum(r is True for r in results)
    others = {
        repr(r)
        for r in results
        if isinstance(r, BaseException) and not isinstance(r, ExclusivityError)
    }
    problems = []
    if violations:
        problems.append(f"EXCLUSIVITY VIOLATED in {violations} tasks")
    if completed != tasks:
        problems.append(f"{completed}/{tasks} tasks completed; errors: {sorted(others)[:3]}")
    if idle != config.size or any(obj.held for obj in objs):
        problems.append(f"pool ended with {idle}/{config.size} objects idle")
    if problems:
        raise AssertionError("; ".join(problems))
    return elapsed * 1e9 / tasks


def run_config(config: Config, impls: Sequence[str], options: Options) -> dict[str, Result]:
    """Best of `repeat` per implementation, each run in a fresh event loop; each round rotates
    the order and every other round reverses it, so no implementation always runs first."""
    results = {name: Result() for name in impls}
    for round_ in range(options.repeat):
        order = rotated(impls, round_)
        if round_ % 2:
            order.reverse()
        for name in order:
            with asyncio.Runner(loop_factory=LOOPS[config.loop]) as runner:
                try:
                    ns = runner.run(measure(IMPLS[name], config, options))
                except AssertionError as exc:
                    results[name].problems.append(str(exc))
                    continue
            results[name].best_ns = min(results[name].best_ns, ns)
    return results


def format_table(config: Config, results: dict[str, Result], repeat: int) -> str:
    floor = results[FLOOR].best_ns
    lines = [
        f"{config}  (best of {repeat})",
        f"| {'implementation':<26} | {'ns/op':>8} | {'x floor':>7} |",
        f"|{'-' * 28}|{'-' * 9}:|{'-' * 8}:|",
    ]
    for name, result in results.items():
        if result.best_ns == float("inf"):
            ns, ratio = "failed", "-"
        else:
            ns, ratio = f"{result.best_ns:,.0f}", f"{result.best_ns / floor:.2f}"
        lines.append(f"| {name:<26} | {ns:>8} | {ratio:>7} |")
        lines.extend(f"    !! {name}: {problem}" for problem in result.problems)
    return "\n".join(lines)


def format_summary(all_results: dict[Config, dict[str, Result]], impls: Sequence[str]) -> str:
    """One row per configuration: the floor in ns, then every pool as a ratio to it."""
    pools = [name for name in impls if name != FLOOR]
    lines = [
        "| loop | P | N | variant | floor ns/op | " + " | ".join(pools) + " |",
        "|---|---:|---:|---|---:|" + "---:|" * len(pools),
    ]
    for config, results in all_results.items():
        floor = results[FLOOR].best_ns
        cells = [
            "failed" if results[n].problems else f"{results[n].best_ns / floor:.2f}" for n in pools
        ]
        row = [config.loop, str(config.size), f"{config.tasks:,}", config.variant, f"{floor:,.0f}"]
        lines.append("| " + " | ".join(row + cells) + " |")
    return "\n".join(lines)


def target_line(all_results: dict[Config, dict[str, Result]]) -> str:
    config = Config(*TARGET)
    results = all_results.get(config)
    if results is None or OURS not in results:
        return f"TARGET not measured ({config}, {OURS}): include that configuration"
    floor = results[FLOOR].best_ns
    ours = results[OURS].best_ns / floor
    others = {n: r.best_ns / floor for n, r in results.items() if n not in (FLOOR, OURS)}
    fastest = min(others, key=others.__getitem__) if others else "none"
    fastest_ratio = others.get(fastest, float("inf"))
    met = ours <= TARGET_RATIO and ours < fastest_ratio
    return (
        f"TARGET {'met' if met else 'not met'}: ratio {ours:.2f}, "
        f"fastest other: {fastest} {fastest_ratio:.2f}"
    )


def csv_ints(text: str) -> list[int]:
    return [int(item) for item in text.split(",") if item]


def csv_choices(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item for item in text.split(",") if item]
        unknown = [item for item in items if item not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {list(choices)}")
        return items

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=csv_ints, default=[10_000, 100_000])
    parser.add_argument("--sizes", type=csv_ints, default=[1, 16])
    parser.add_argument("--loops", type=csv_choices(list(LOOPS)), default=list(LOOPS))
    parser.add_argument("--variants", type=csv_choices(VARIANTS), default=list(VARIANTS))
    parser.add_argument(
        "--impls",
        type=csv_choices([n for n in IMPLS if n != FLOOR]),
        default=[n for n in IMPLS if n != FLOOR],
        help="pools to compare (the floor is always measured)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds before one run counts as failed"
    )
    parser.add_argument(
        "--gc",
        action="store_true",
        help="keep the garbage collector running while timing (default: off, as timeit does)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: --tasks 10000 --repeat 1")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.repeat = [10_000], 1
    return args


def header() -> str:
    packages = ", ".join(
        f"{name} {version(name)}" for name in ("uvloop", "asyncio-connection-pool", "connpool")
    )
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    # The pool is often edited while it is benchmarked: name the exact source measured.
    source = Path(pool_module.__file__ or "")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    return (
        f"{now}; Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs; {packages}; {source} sha256 {digest}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    impls = [FLOOR, *args.impls]
    options = Options(repeat=args.repeat, limit=args.timeout, collect=args.gc)
    print(f"{header()}; gc {'on' if args.gc else 'off'} while timing", flush=True)
    all_results: dict[Config, dict[str, Result]] = {}
    for loop in args.loops:
        for tasks in args.tasks:
            for size in args.sizes:
                for variant in args.variants:
                    config = Config(loop, size, tasks, variant)
                    results = run_config(config, impls, options)
                    all_results[config] = results
                    print(f"\n{format_table(config, results, args.repeat)}", flush=True)
    print(f"\nSummary: x floor (best of {args.repeat})")
    print(format_summary(all_results, impls))
    print()
    print(target_line(all_results))
    failed = any(r.problems for results in all_results.values() for r in results.values())
    if failed:
        print("FAILED: see the !! lines above", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
