"""Batch jobs on a real Ray cluster: a head node and a second node joined to it, started here
with ``ray start`` (one CPU each, a private temp dir) and stopped at the end — not local_mode.

The results must equal the single-process run of test_batch.py item by item, the errors manifest
must name the bad files, and an actor killed by its pid mid-job must not lose or duplicate an item.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from test_batch import BAD, SPEECH, by_id, collection, comparable, demo_options, reference

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
__all__ = ["collection", "reference"]  # module fixtures of test_batch.py, shared

SRC = Path(__file__).resolve().parents[1] / "src"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process we can see."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{name}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        found[int(name)] = (parent, command)
    return found


def _cluster_pids(temp_dir: str) -> set[int]:
    """The processes of the cluster started with ``temp_dir``: those naming it, and their
    descendants (agents, workers, actors)."""
    table = _processes()
    tree = {pid for pid, (_, command) in table.items() if temp_dir in command} - {os.getpid()}
    grown = True
    while grown:
        children = {pid for pid, (parent, _) in table.items() if parent in tree} - tree
        tree |= children
        grown = bool(children)
    return tree


@pytest.fixture(scope="module")
def cluster():
    """The address of a 2-node local Ray cluster (head + one worker node, 1 CPU each)."""
    pytest.importorskip("ray.data", reason="Ray Data is missing (pip install 'mmspeech[ray]')")
    ray_cli = Path(sys.executable).with_name("ray")
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Unix socket paths
    port = _free_port()
    path = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    # no token authentication on this private 127.0.0.1 cluster, whatever ~/.ray holds (a local
    # ray.init() run before writes a token there, and nodes would then disagree about it)
    saved_mode = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # for this process, the driver
    env = {**os.environ, "PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--num-cpus=1", "--object-store-memory=100000000", "--disable-usage-stats"]
    head = [ray_cli, "start", "--head", f"--port={port}", f"--temp-dir={temp_dir}",
            "--include-dashboard=false", *common]  # fmt: skip
    node = [ray_cli, "start", f"--address=127.0.0.1:{port}", *common]
    try:
        for command in (head, node):  # each returns once its node is up
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"{' '.join(map(str, command))}:\n{done.stderr[-3000:]}"
        yield f"127.0.0.1:{port}"
    finally:
        if saved_mode is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved_mode
        for pid in _cluster_pids(temp_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


def ray_options(address: str, **changes):
    return demo_options(ray=True, ray_address=address, actors=(2, 2), **changes)


def test_cluster_has_two_nodes(cluster):
    import ray

    ray.init(address=cluster, log_to_driver=False)
    try:
        nodes = [node for node in ray.nodes() if node["Alive"]]
        assert len(nodes) == 2 and ray.cluster_resources()["CPU"] == 2
    finally:
        ray.shutdown()


def test_ray_job_equals_the_single_process_job(cluster, collection, reference, tmp_path):
    from mmspeech.batch import transcribe_collection

    summary = transcribe_collection(collection, tmp_path / "out", ray_options(cluster))
    assert summary.manifest is not None
    results = by_id(tmp_path / "out" / "results.jsonl")
    assert {k: comparable(v) for k, v in results.items()} == {
        k: comparable(v) for k, v in by_id(reference / "results.jsonl").items()
    }
    assert set(by_id(tmp_path / "out" / "errors.jsonl")) == set(BAD)


def test_an_actor_killed_mid_job_loses_and_duplicates_nothing(
    cluster, collection, reference, tmp_path
):
    import ray
    from ray._private import state

    from mmspeech.batch import transcribe_collection

    killed: list[int] = []

    def kill_an_actor(progress):
        if progress.stage != "transcribe" or killed:
            return
        actors = state.actors().values()  # straight from the GCS (no dashboard here)
        alive = [a for a in actors if a["State"] == "ALIVE"]
        pids = [actor["Pid"] for actor in alive if "UnitActor" in actor["ActorClassName"]]
        assert pids, "no live actor to kill"
        killed.append(pids[0])
        os.kill(pids[0], signal.SIGKILL)

    out = tmp_path / "out"
    summary = transcribe_collection(
        collection, out, ray_options(cluster, shard_size=1), on_progress=kill_an_actor
    )
    assert killed and summary.manifest is not None and not ray.is_initialized()
    ray.init(address=cluster, log_to_driver=False)
    try:  # Ray restarted the killed actor and retried its task
        restarted = [a for a in state.actors().values() if a["NumRestarts"] > 0]
        assert restarted
    finally:
        ray.shutdown()
    shard_ids = [row["id"] for shard in out.glob("shards/*.jsonl") for row in by_id(shard).values()]
    assert sorted(shard_ids) == sorted({*shard_ids})  # no item written twice
    assert len(shard_ids) == len(SPEECH) + 1 + len(BAD)
    assert {k: comparable(v) for k, v in by_id(out / "results.jsonl").items()} == {
        k: comparable(v) for k, v in by_id(reference / "results.jsonl").items()
    }
