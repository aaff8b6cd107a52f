"""Replicas that die or freeze under load, with every call through the queue group.

Each test prints its figures (run with -s to see them)."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from natsmesh.config import Settings
from natsmesh.errors import MeshError
from natsmesh.session import connect
from tests.conftest import env_for
from tests.helpers import TEST_AGENTS

LEDGER = TEST_AGENTS / "ledger_agent.py"
pytestmark = pytest.mark.slow


class Replicas:
    """Three ledger-agent processes."""

    def __init__(self, settings: Settings, ledger: Path) -> None:
        env = {**env_for(settings), "LEDGER_DIR": str(ledger)}
        self.ledger = ledger
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "natsmesh.worker", str(LEDGER)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(3)
        ]

    def in_flight(self, pid: int) -> set[str]:
        """Calls a replica started and did not end."""
        started: set[str] = set()
        for line in (self.ledger / str(pid)).read_text().splitlines():
            what, call = line.split()
            (started.add if what == "start" else started.discard)(call)
        return started

    def started_by_others(self, victim: int) -> set[str]:
        """Calls that a surviving replica started."""
        started: set[str] = set()
        for proc in self.procs:
            ledger = self.ledger / str(proc.pid)
            if proc.pid != victim and ledger.exists():
                started |= {
                    line.split()[1] for line in ledger.read_text().splitlines() if "start" in line
                }
        return started

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def replicas(settings: Settings, tmp_path: Path):
    group = Replicas(settings, tmp_path)
    yield group
    group.close()


class Outcome:
    def __init__(self, call: str, started: float) -> None:
        self.call = call
        self.started = started
        self.ended = 0.0
        self.error: MeshError | None = None
        self.instance = ""


async def load(
    settings: Settings, tool: str, fault: Any, delay: float = 0.2, callers: int = 12
) -> tuple[list[Outcome], float]:
    """Steady calls from ``callers`` tasks; ``fault()`` runs once the load is steady.
    Returns every outcome and the time of the fault."""
    outcomes: list[Outcome] = []
    stop = asyncio.Event()
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 3, timeout=20)

        async def caller(n: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                out = Outcome(f"{n}-{i}", time.monotonic())
                outcomes.append(out)
                try:
                    await mesh.call(tool, {"call": out.call, "delay": delay}, timeout=5)
                except MeshError as exc:
                    out.error = exc
                out.ended = time.monotonic()

        tasks = [asyncio.create_task(caller(n)) for n in range(callers)]
        await asyncio.sleep(0.6)  # a duration of steady load, not synchronisation
        fault_at = time.monotonic()
        await fault()
        await asyncio.sleep(2.5)  # load goes on after the fault
        stop.set()
        await asyncio.gather(*tasks)
    return outcomes, fault_at


def report(name: str, outcomes: list[Outcome], fault_at: float, **extra: Any) -> None:
    failed = collections.Counter(o.error.type for o in outcomes if o.error)
    print(
        json.dumps(
            {
                "fault": name,
                "sent": len(outcomes),
                "failed": dict(failed),
                "longest_call_s": round(max(o.ended - o.started for o in outcomes), 3),
                **extra,
            }
        )
    )


async def test_a_killed_replica_of_an_idempotent_tool_costs_no_call(
    replicas: Replicas, settings: Settings
) -> None:
    victim = replicas.procs[0]

    async def kill() -> None:
        victim.send_signal(signal.SIGKILL)

    outcomes, at = await load(settings, "step_idem", kill)
    report("SIGKILL, idempotent", outcomes, at, in_flight=len(replicas.in_flight(victim.pid)))
    assert replicas.in_flight(victim.pid), "the kill happened while the victim had calls"
    assert [o.error for o in outcomes if o.error] == []


async def test_a_killed_replica_of_a_plain_tool_ends_its_calls_at_once(
    replicas: Replicas, settings: Settings
) -> None:
    victim = replicas.procs[0]

    async def kill() -> None:
        victim.send_signal(signal.SIGKILL)

    outcomes, at = await load(settings, "step", kill)
    lost = replicas.in_flight(victim.pid)
    failed = [o for o in outcomes if o.error]
    report(
        "SIGKILL, plain",
        outcomes,
        at,
        in_flight=len(lost),
        ended_after_kill_s=[round(o.ended - at, 3) for o in failed],
    )
    assert lost, "the kill happened while the victim had calls"
    # a failure is a call the victim was running, or one delivered to it that it had not
    # started yet (still in its socket): never a call that a surviving replica ran
    assert not {o.call for o in failed} & replicas.started_by_others(victim.pid)
    assert lost <= {o.call for o in failed}, "every call the victim was running failed"
    for o in failed:
        assert o.error is not None and o.error.type == "unavailable", o.error
        assert o.error.details.get("outcome") == "unknown"
        assert o.ended - at <= 1.5, "ended soon after the kill, not at the deadline"


async def test_a_frozen_replica_delays_idempotent_calls_briefly_and_fails_others_clearly(
    replicas: Replicas, settings: Settings
) -> None:
    victim = replicas.procs[0]

    async def freeze() -> None:
        victim.send_signal(signal.SIGSTOP)

    outcomes, at = await load(settings, "step_idem", freeze)
    report("SIGSTOP, idempotent", outcomes, at)
    assert [o.error for o in outcomes if o.error] == []
    assert max(o.ended - o.started for o in outcomes) <= 0.2 + 2.0

    os.kill(victim.pid, signal.SIGCONT)
    async with connect(settings) as mesh:  # let the victim catch up before freezing it again
        await mesh.call("step", {"call": "warm", "delay": 0}, timeout=5)

    outcomes, at = await load(settings, "step", freeze)
    failed = [o for o in outcomes if o.error]
    report(
        "SIGSTOP, plain",
        outcomes,
        at,
        ended_after_freeze_s=[round(o.ended - at, 3) for o in failed],
    )
    for o in failed:
        assert o.error is not None and o.error.type == "unavailable", o.error
        assert o.ended - o.started <= 0.2 + 2.0
    assert max(o.ended - o.started for o in outcomes) <= 0.2 + 2.0, "no call waits for its deadline"


async def test_replicas_share_the_calls_through_the_queue_group(
    replicas: Replicas, settings: Settings
) -> None:
    async with connect(settings) as mesh:
        await mesh.view.wait_for(lambda v: len(v.records) == 3, timeout=20)
        spy = await mesh.nc.subscribe(f"{settings.prefix}.>")
        sem = asyncio.Semaphore(16)

        async def one(i: int) -> int:
            async with sem:
                return (await mesh.call("step_idem", {"call": str(i), "delay": 0}))["pid"]

        pids = collections.Counter(await asyncio.gather(*(one(i) for i in range(600))))
        subjects = collections.Counter()
        while True:
            try:
                msg = await spy.next_msg(timeout=0.2)
            except Exception:
                break
            subjects[msg.subject.split(".")[1]] += 1
    print(json.dumps({"spread": sorted(pids.values()), "subjects": dict(subjects)}))
    assert set(pids) == {p.pid for p in replicas.procs}
    assert min(pids.values()) >= 150, f"each replica gets at least 25%: {pids}"
    assert subjects["cap"] == 600 and subjects["inst"] == 0, "no client-side instance choice"
