"""Property-based fuzzing of the server from its own OpenAPI document (schemathesis): whatever
the generated request, the answer is never a 5xx, its status code is one the document lists, and
error bodies have the documented shape. A bounded number of examples keeps it well under a minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mmspeech.server import ServerSettings, create_app  # noqa: E402
from test_server import LiveServer  # noqa: E402

KEY = "fuzz-key"
schema = schemathesis.openapi.from_dict(create_app(ServerSettings()).openapi())


@pytest.fixture(scope="module")
def live(server_models: Path) -> Iterator[LiveServer]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    app = create_app(
        ServerSettings(
            models_dir=server_models,
            default_asr="mms-tiny-all",
            default_lid="mms-lid-tiny",
            default_tts="mms-tts-eng",
            api_key=KEY,
            max_text_chars=300,
            max_audio_seconds=20,
        )
    )
    with LiveServer(app) as server:
        yield server
    torch.set_num_threads(threads)


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors_on_generated_requests(case: Any, live: LiveServer) -> None:
    response = case.call(base_url=live.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert response.status_code < 500, (case.method, case.path, response.text[:500])
    case.validate_response(
        response,
        checks=[status_code_conformance, content_type_conformance, response_schema_conformance],
    )
    assert live.thread.is_alive()
