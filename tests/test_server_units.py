"""The server's parts on their own: the scheduler (bounded queue, timeouts, micro-batching), the
registry (allow-list, lazy loading, LRU eviction within a memory budget), metrics, the CLI."""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")

from mmspeech.errors import ConfigError
from mmspeech.server.cli import parse_models, register, settings_from_args
from mmspeech.server.errors import APIError
from mmspeech.server.metrics import Metrics
from mmspeech.server.registry import ModelRegistry, kind_of_checkpoint
from mmspeech.server.scheduler import Scheduler
from mmspeech.server.settings import ServerSettings


def scheduler(**changes: Any) -> Scheduler:
    options: dict[str, Any] = {"max_queue": 4, "max_batch": 4, "batch_wait": 0.05, "workers": 1,
                               "retry_after": 3, "metrics": Metrics()}  # fmt: skip
    return Scheduler(**{**options, **changes})


def test_full_queue_is_refused_with_retry_after():
    async def scenario() -> None:
        jobs = scheduler(max_queue=2)
        await jobs.start()
        release, started = threading.Event(), threading.Event()

        def blocked(items: list[Any]) -> list[Any]:
            started.set()
            release.wait(10)
            return items

        first = asyncio.create_task(jobs.submit(blocked, 1))
        second = asyncio.create_task(jobs.submit(blocked, 2))
        assert await asyncio.to_thread(started.wait, 10)  # the first job is running
        await asyncio.sleep(0)  # the second one has queued
        assert jobs.depth == 2
        with pytest.raises(APIError) as refused:
            await jobs.submit(blocked, 3)
        assert refused.value.status == 429
        assert refused.value.headers == {"Retry-After": "3"}
        release.set()
        assert await first == 1 and await second == 2
        assert jobs.depth == 0
        assert await jobs.submit(blocked, 4) == 4  # serving again
        await jobs.stop()
        with pytest.raises(APIError) as stopped:
            await jobs.submit(blocked, 5)
        assert stopped.value.status == 503 and "Retry-After" in stopped.value.headers

    asyncio.run(scenario())


def test_timeout_gives_504_and_the_queue_recovers():
    async def scenario() -> None:
        jobs = scheduler()
        await jobs.start()
        release = threading.Event()

        def slow(items: list[Any]) -> list[Any]:
            release.wait(10)
            return items

        with pytest.raises(APIError) as late:
            await jobs.submit(slow, 1, timeout=0.05)
        assert late.value.status == 504 and "0.05 s" in late.value.message
        release.set()
        assert await jobs.submit(lambda items: [x * 2 for x in items], 21) == 42
        await jobs.stop()

    asyncio.run(scenario())


def test_a_cancelled_request_leaves_the_queue_without_running():
    async def scenario() -> None:
        jobs = scheduler()
        await jobs.start()
        release, started = threading.Event(), threading.Event()
        ran: list[Any] = []

        def work(items: list[Any]) -> list[Any]:
            started.set()
            release.wait(10)
            ran.extend(items)
            return items

        first = asyncio.create_task(jobs.submit(work, "first"))
        second = asyncio.create_task(jobs.submit(work, "gone"))
        assert await asyncio.to_thread(started.wait, 10)  # the first job is running
        await asyncio.sleep(0)  # the second one has queued
        assert jobs.depth == 2
        second.cancel()  # as when a client disconnects
        await asyncio.gather(second, return_exceptions=True)
        assert jobs.depth == 1
        release.set()
        assert await first == "first"
        assert await jobs.submit(work, "third") == "third"
        assert ran == ["first", "third"]
        await jobs.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize("max_batch", [1, 3])
def test_same_key_jobs_share_a_call_up_to_max_batch(max_batch):
    calls: list[list[Any]] = []

    def run(items: list[Any]) -> list[Any]:
        calls.append(list(items))
        return [f"done {x}" for x in items]

    async def scenario() -> list[Any]:
        jobs = scheduler(max_batch=max_batch, max_queue=16, batch_wait=0.2)
        await jobs.start()
        tasks = [jobs.submit(run, i, key="fra") for i in range(5)]
        tasks.append(jobs.submit(run, "x", key="deu"))
        results = await asyncio.gather(*tasks)
        await jobs.stop()
        return results

    results = asyncio.run(scenario())
    assert results == [f"done {x}" for x in [0, 1, 2, 3, 4, "x"]]
    assert max(len(call) for call in calls) == max_batch
    assert sum(len(call) for call in calls) == 6
    assert ["x"] in calls  # another language never joins a French batch


def test_an_error_in_a_job_reaches_its_caller_only():
    async def scenario() -> None:
        jobs = scheduler()
        await jobs.start()

        def broken(items: list[Any]) -> list[Any]:
            raise ValueError("bad input")

        with pytest.raises(ValueError, match="bad input"):
            await jobs.submit(broken, 1)
        assert await jobs.submit(lambda items: items, 7) == 7
        await jobs.stop()

    asyncio.run(scenario())


def test_registry_resolves_only_allowed_names(server_models: Path, tmp_path: Path):
    settings = ServerSettings(models={"asr": str(server_models / "mms-tiny-all")},
                              models_dir=server_models)  # fmt: skip
    registry = ModelRegistry(settings, loaders={})
    assert registry.resolve("asr", "asr").ref == str(server_models / "mms-tiny-all")
    assert registry.resolve("mms-tts-fra", "tts").kind == "tts"
    with pytest.raises(APIError) as hub:
        registry.resolve("facebook/mms-tts-deu", "tts")
    assert hub.value.status == 404
    allowed = ModelRegistry(ServerSettings(allow_hub=True), loaders={})
    assert allowed.resolve("facebook/mms-tts-deu", "tts").ref == "facebook/mms-tts-deu"
    with pytest.raises(APIError) as traversal:
        allowed.resolve("facebook/../../etc", "tts")
    assert traversal.value.status == 400
    (tmp_path / "not-a-model").mkdir()
    assert kind_of_checkpoint(tmp_path / "not-a-model") is None
    assert [e.name for e in ModelRegistry(ServerSettings(models_dir=tmp_path)).entries()] == []


def test_registry_loads_lazily_once_and_evicts_least_recently_used(
    server_models: Path, monkeypatch: pytest.MonkeyPatch
):
    loads: list[str] = []
    sizes = {"mms-tts-eng": 400, "mms-tts-fra": 400, "mms-lid-tiny": 300}

    class Fake:
        def __init__(self, name: str):
            self.name = name

    def loader(ref: str, device: str | None) -> Any:
        loads.append(Path(ref).name)
        return Fake(Path(ref).name)

    settings = ServerSettings(models_dir=server_models, memory_budget_bytes=800)
    registry = ModelRegistry(settings, {"tts": loader, "lid": loader})
    monkeypatch.setattr(
        "mmspeech.server.registry.estimated_bytes", lambda ref: sizes[Path(ref).name]
    )
    monkeypatch.setattr("mmspeech.server.registry._config_estimate", lambda ref: 0)
    eng = registry.resolve("mms-tts-eng", "tts")
    fra = registry.resolve("mms-tts-fra", "tts")
    lid = registry.resolve("mms-lid-tiny", "lid")
    assert loads == []  # nothing loads before it is used
    threads = [threading.Thread(target=registry.get, args=(eng,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loads == ["mms-tts-eng"]  # concurrent first uses share one load
    registry.get(fra)
    registry.get(eng)  # eng is now the most recently used
    registry.get(lid)  # 400 + 400 + 300 > 800: the least recently used (fra) goes
    assert registry.loaded_names() == ["mms-tts-eng", "mms-lid-tiny"]
    assert registry.evictions == 1 and registry.loaded_bytes() == 700
    registry.get(fra)
    assert loads == ["mms-tts-eng", "mms-tts-fra", "mms-lid-tiny", "mms-tts-fra"]


def test_metrics_render_prometheus_text():
    from prometheus_client.parser import text_string_to_metric_families

    metrics = Metrics()
    labels = {"endpoint": "/x", "method": "GET", "status": "200"}
    metrics.count("mmspeech_requests_total", labels)
    metrics.count("mmspeech_requests_total", labels)
    metrics.observe("mmspeech_batch_size", 3)
    text = metrics.render({"mmspeech_queue_depth": ("depth", lambda: [({}, 2)])})
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("mmspeech_requests_total", tuple(sorted(labels.items())))] == 2
    assert samples[("mmspeech_batch_size_bucket", (("le", "2.0"),))] == 0
    assert samples[("mmspeech_batch_size_bucket", (("le", "4.0"),))] == 1
    assert samples[("mmspeech_batch_size_sum", ())] == 3
    assert samples[("mmspeech_queue_depth", ())] == 2
    assert "# TYPE mmspeech_queue_depth gauge" in text


def test_serve_options_become_settings(tmp_path: Path):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["serve", "--model", "asr=/m/asr", "--model", "/m/mms-tts-eng/", "--models-dir",
         str(tmp_path), "--api-key", "k", "--max-batch", "1", "--batch-wait-ms", "20",
         "--max-upload-mb", "1", "--default-asr", "asr", "--max-session-seconds", "60",
         "--max-realtime-backlog", "2.5"]
    )  # fmt: skip
    settings = settings_from_args(args)
    assert settings.max_session_seconds == 60 and settings.max_realtime_backlog_seconds == 2.5
    assert settings.models == {"asr": "/m/asr", "mms-tts-eng": "/m/mms-tts-eng/"}
    assert settings.api_key == "k" and settings.max_batch == 1
    assert settings.batch_wait == pytest.approx(0.02)
    assert settings.max_upload_bytes == 2**20 and settings.default_asr == "asr"
    assert args.run.__name__ == "run"
    with pytest.raises(ConfigError, match="NAME=REF"):
        parse_models(["=x"])


def test_serve_caps_connections_and_body_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Issue 20 item 5: stalled clients can hold at most --max-connections connections (uvicorn
    answers 503 beyond), each for at most --body-timeout seconds of body."""
    import uvicorn

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--models-dir", str(tmp_path), "--max-connections", "7",
                              "--body-timeout", "2.5"])  # fmt: skip
    settings = settings_from_args(args)
    assert settings.max_connections == 7 and settings.body_timeout == 2.5
    ran: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: ran.update(options))
    assert args.run(args) == 0
    assert ran["limit_concurrency"] == 7


def test_serve_command_runs_a_server_until_terminated(server_models: Path):
    import socket
    import subprocess
    import sys
    import time

    httpx = pytest.importorskip("httpx")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "mmspeech", "serve", "--models-dir", str(server_models),
               "--port", str(port), "--api-key", "k", "--log-level", "warning"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        models = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer k"}).json()
        assert "mms-tiny-all" in {model["id"] for model in models["data"]}
        assert httpx.get(url + "/v1/models").status_code == 401
    finally:
        process.terminate()  # uvicorn shuts down gracefully, then re-raises SIGTERM
        assert process.wait(30) in (0, -15)


def test_allow_hub_loads_hub_ids_only_and_never_says_whether_a_directory_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Issue 20 item 3: with --allow-hub, 'local/dir' (a directory in the server's working
    directory, spelt like a hub id) is not loaded, and the answer reads exactly as for a hub id
    the hub does not have; paths stay 400."""
    from mmspeech.errors import CheckpointNotFoundError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "local" / "dir").mkdir(parents=True)
    (tmp_path / "local" / "dir" / "config.json").write_text('{"architectures": ["Wav2Vec2ForCTC"]}')
    loaded: list[str] = []

    def loader(ref: str, device: str | None) -> Any:
        loaded.append(ref)
        raise CheckpointNotFoundError(f"Repository {ref} not found at /root/.cache/huggingface")

    registry = ModelRegistry(ServerSettings(allow_hub=True), {"asr": loader})
    answers = []
    for name in ("local/dir", "nobody/nothing"):
        with pytest.raises(APIError) as info:
            registry.get(registry.resolve(name, "asr"))
        answers.append((info.value.status, info.value.message.replace(name, "NAME")))
    assert loaded == ["nobody/nothing"]  # the local directory never reached a loader
    assert answers[0] == answers[1] and answers[0][0] == 404
    assert "/root" not in answers[1][1] and "cache" not in answers[1][1]
    for path in ("local/dir/sub", "./local/dir", "/etc/passwd", "local/../local/dir"):
        with pytest.raises(APIError) as info:
            registry.resolve(path, "asr")
        assert info.value.status == 400 and info.value.code == "invalid_model_reference"


def test_a_failed_load_frees_its_memory_and_is_remembered_for_a_while(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Issue 20 item 2: nothing of a failed load stays referenced (its exception and frames are
    dropped), and requests within load_failure_ttl get the same error without another try."""
    import weakref

    import torch

    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text('{"architectures": ["Wav2Vec2ForCTC"]}')
    allocated: list[weakref.ref[torch.Tensor]] = []

    def loader(ref: str, device: str | None) -> Any:
        weights = torch.zeros(1 << 20)  # what a half-done load holds when it fails
        allocated.append(weakref.ref(weights))
        raise RuntimeError(f"size mismatch in {ref}/model.safetensors")

    clock = [100.0]
    monkeypatch.setattr("mmspeech.server.registry._now", lambda: clock[0])
    settings = ServerSettings(models_dir=tmp_path, load_failure_ttl=30.0)
    registry = ModelRegistry(settings, {"asr": loader})
    entry = registry.resolve("broken", "asr")
    for _ in range(3):
        with pytest.raises(APIError) as info:
            registry.get(entry)
        assert info.value.status == 500 and info.value.code == "model_error"
        assert str(tmp_path) not in info.value.message and "broken" in info.value.message
        assert info.value.__traceback__ is not None
    assert len(allocated) == 1  # remembered: one attempt for three requests
    assert allocated[0]() is None  # and its memory is free
    clock[0] += 31.0
    with pytest.raises(APIError):
        registry.get(entry)
    assert len(allocated) == 2  # tried again once the failure expired


def test_a_config_over_the_memory_budget_is_refused_before_loading(tmp_path: Path):
    """Issue 20 item 2: hidden_size 1e9 in config.json is refused from the config alone."""
    for name, hidden in (("huge", 1_000_000_000), ("absurd", -1), ("fits", 32)):
        (tmp_path / name).mkdir()
        config = {"architectures": ["Wav2Vec2ForCTC"], "hidden_size": hidden,
                  "num_hidden_layers": 2, "intermediate_size": 64, "vocab_size": 40}  # fmt: skip
        (tmp_path / name / "config.json").write_text(json.dumps(config))
    calls: list[str] = []
    settings = ServerSettings(models_dir=tmp_path, memory_budget_bytes=8 * 1024**3)
    model = argparse.Namespace()  # any object: the loader is what is tested
    registry = ModelRegistry(settings, {"asr": lambda ref, device: calls.append(ref) or model})
    for name in ("huge", "absurd"):
        with pytest.raises(APIError) as info:
            registry.get(registry.resolve(name, "asr"))
        assert info.value.code == "model_too_large" and "budget" in info.value.message
    assert calls == []
    assert registry.get(registry.resolve("fits", "asr")) is model


def test_body_paths_and_metric_labels_come_from_the_routes(server_models: Path):
    """Issue 17: the content-type check and the metric labels read the router, not lists that
    repeat its paths; every task has its default setting and serve option."""
    from fastapi.testclient import TestClient

    from mmspeech.server import create_app
    from mmspeech.server.formats import AUDIO_FORMATS, AUDIO_MEDIA_TYPES
    from mmspeech.server.settings import TASKS

    app = create_app(ServerSettings(models_dir=server_models, default_asr="mms-tiny-all"))
    paths = app.state.mmspeech.body_paths
    assert paths.multipart == {
        "/v1/audio/transcriptions", "/v1/audio/translations", "/v1/audio/language",
    }  # fmt: skip
    assert paths.json == {"/v1/audio/speech"}
    with TestClient(app) as http:
        assert http.get("/v1/models/mms-tiny-all/languages").status_code == 200
        assert http.post("/v1/audio/speech", content=b"x").status_code == 415
        metrics = http.get("/metrics").text
    assert 'endpoint="/v1/models/{name}/languages"' in metrics
    assert set(AUDIO_MEDIA_TYPES) == set(AUDIO_FORMATS)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", *[f"--default-{task}=x-{task}" for task in TASKS]])
    settings = settings_from_args(args)
    assert all(settings.default_for(task) == f"x-{task}" for task in TASKS)


def test_models_say_which_are_the_bundled_demo_checkpoints(server_models: Path):
    """Issue 19: /v1/models marks the demo checkpoints, and the page has the notice that shows
    them and the language-ID panel (the browser tests drive both)."""
    from fastapi.testclient import TestClient

    from mmspeech.demo import demo_checkpoint
    from mmspeech.server import create_app

    settings = ServerSettings(
        models={"mms-1b-all": str(demo_checkpoint("asr"))}, models_dir=server_models
    )
    with TestClient(create_app(settings)) as http:
        listed = {item["id"]: item for item in http.get("/v1/models").json()["data"]}
        page = http.get("/").text
    assert listed["mms-1b-all"]["demo"] is True and listed["mms-tiny-all"]["demo"] is False
    for element in ('id="demo-notice"', 'id="lid-model"', 'id="identify"', 'id="lid-result"'):
        assert element in page


def test_models_load_in_their_compute_type(tmp_path: Path):
    """--compute-type for every model, --model-compute-type NAME=TYPE for one (real loaders)."""
    from mmspeech.demo import demo_checkpoint

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["serve", "--model", f"asr={demo_checkpoint('asr')}",
                              "--model", f"lid={demo_checkpoint('lid')}", "--compute-type", "int8",
                              "--model-compute-type", "lid=bfloat16"])  # fmt: skip
    settings = settings_from_args(args)
    registry = ModelRegistry(settings)
    asr = registry.get(registry.resolve("asr", "asr"))
    lid = registry.get(registry.resolve("lid", "lid"))
    assert asr.model.compute_type == "int8" and lid.model.compute_type == "bfloat16"
    with pytest.raises(ConfigError, match="--model-compute-type expects NAME=TYPE"):
        settings_from_args(parser.parse_args(["serve", "--model-compute-type", "lid=int4"]))
