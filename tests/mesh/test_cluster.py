"""A three-node NATS cluster: R3 registry and span stream; a node dies, the mesh goes on."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from natsmesh.errors import MeshError
from natsmesh.loader import load_file
from natsmesh.ops.cluster import Cluster, start_cluster
from natsmesh.runtime import Runtime
from natsmesh.session import connect
from tests.conftest import agent_file, mesh_settings

pytestmark = pytest.mark.slow
ARGS = {"origin": "SFO", "destination": "NRT", "date": "2026-06-01"}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = start_cluster(tmp_path)
    yield c
    c.stop()


async def test_node_failure_keeps_the_mesh_running(cluster: Cluster) -> None:
    base = mesh_settings(cluster.urls[0], replicas=3)
    # each process starts on a different node; it learns the others from the cluster
    on = [base.__class__(**{**base.__dict__, "nats_url": url}) for url in cluster.urls]
    prefs_loaded, flight_loaded = (
        load_file(agent_file("user_prefs_agent")),
        load_file(agent_file("flight_agent")),
    )
    prefs = Runtime(prefs_loaded.agent, prefs_loaded.tools, on[0])
    flight = Runtime(flight_loaded.agent, flight_loaded.tools, on[1])
    await prefs.start()
    await flight.start()
    try:
        async with connect(on[2]) as mesh:
            await mesh.view.wait_for(lambda v: len(v.records) == 2, timeout=10)
            assert (await mesh.call("flight_search", ARGS))["personalized"] is True
            js = mesh.nc.jetstream()
            assert (await js.stream_info(f"KV_{base.registry_bucket}")).config.num_replicas == 3
            assert (await js.stream_info(base.spans_stream)).config.num_replicas == 3

            cluster.nodes[0].kill()  # the node user-prefs-agent is connected to
            t0 = time.perf_counter()
            failures = 0
            while True:
                try:
                    result = await mesh.call("flight_search", ARGS, timeout=2)
                    if result["personalized"]:
                        break
                except MeshError:
                    failures += 1
                assert time.perf_counter() - t0 < 20, "calls did not go on"
                await asyncio.sleep(0.1)
            stall = time.perf_counter() - t0
            assert prefs.nc is not None and prefs.nc.connected_url is not None
            assert prefs.nc.connected_url.port != int(cluster.urls[0].rsplit(":", 1)[1])
            # it kept its registration
            await mesh.view.wait_for(lambda v: len(v.records) == 2, timeout=10)
            assert any(r.instance_id == prefs.instance_id for r in mesh.view.records.values())
            print(
                json.dumps(
                    {
                        "fault": "cluster node killed",
                        "failed_calls": failures,
                        "stall_s": round(stall, 2),
                    }
                )
            )
    finally:
        await flight.stop(grace=1)
        await prefs.stop(grace=1)
