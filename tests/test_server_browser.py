"""The web page in a real headless Chromium (Debian's, driven by Playwright; no browser download):
load the page, upload a file, see the transcript with timestamps, request speech and get audio."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import soundfile
import torch
from conftest import speech

pytest.importorskip("fastapi")
sync_api = pytest.importorskip("playwright.sync_api")

from mmspeech.api import load_asr  # noqa: E402
from mmspeech.server import ServerSettings, create_app  # noqa: E402
from test_server import LiveServer  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
KEY = "browser-key"


@pytest.fixture(scope="module")
def live(server_models: Path) -> Iterator[LiveServer]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    settings = ServerSettings(
        models_dir=server_models,
        default_asr="mms-tiny-all",
        default_lid="mms-lid-tiny",
        default_tts="mms-tts-eng",
        api_key=KEY,
    )
    with LiveServer(create_app(settings)) as server:
        yield server
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (scripts/test.sh installs it)")
    with sync_api.sync_playwright() as playwright:
        yield playwright


def sign_in(page: Any, url: str, key: str, option: str | None = None) -> None:
    """Open the page at ``url``, enter the API key (which stores it and reloads the model
    lists) and, when given, wait until the ``option`` selector is listed."""
    page.goto(url + "/")
    page.fill("#api-key", key)
    page.dispatch_event("#api-key", "change")
    if option is not None:
        page.wait_for_selector(option, state="attached")


@pytest.fixture(scope="module")
def page(live: LiveServer, playwright: Any) -> Iterator[Any]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
    page = browser.new_page()
    page.set_default_timeout(60_000)
    yield page
    browser.close()


def test_page_transcribes_an_upload_and_speaks(live, page, server_models, tmp_path):
    clip = tmp_path / "clip.wav"
    buffer = io.BytesIO()
    soundfile.write(buffer, speech(1.2, seed=7), 16_000, format="WAV")
    clip.write_bytes(buffer.getvalue())
    expected = load_asr(server_models / "mms-tiny-all", device="cpu").transcribe(clip, "deu")

    sign_in(page, live.url, KEY, "#asr-model option[value='mms-tiny-all']")
    assert page.title() == "mmspeech"
    page.set_input_files("#file", str(clip))
    page.fill("#language", "deu")
    page.click("#transcribe")
    page.wait_for_selector("#transcript-text")
    assert page.inner_text("#transcript-text") == expected.text
    rows = page.query_selector_all("#transcript table tr")
    assert len(rows) == 1 + len(expected.segments)
    first = expected.segments[0]
    cells = [cell.inner_text() for cell in rows[1].query_selector_all("td")]
    assert cells == [f"0:{first.start:05.2f}", f"0:{first.end:05.2f}", first.text]
    assert "Language: german [deu]" in page.inner_text("#transcript")

    page.fill("#tts-text", "hello there")
    page.select_option("#tts-model", "mms-tts-fra")
    page.click("#speak")
    page.wait_for_function("document.getElementById('tts-audio').dataset.bytes > 44")
    assert page.inner_text("#tts-status").startswith("Done")
    assert page.eval_on_selector("#tts-audio", "a => a.src.startsWith('blob:')")


def test_page_shows_server_errors(live, page):
    sign_in(page, live.url, KEY)
    page.click("#transcribe")  # nothing chosen
    assert "Choose an audio file" in page.inner_text("#asr-status")
    page.fill("#tts-text", "")
    page.click("#speak")
    page.wait_for_selector("#tts-status.error")
    assert "empty" in page.inner_text("#tts-status")


def test_page_records_from_the_microphone_and_transcribes(live, playwright):
    """Chromium's fake microphone (a beep): record, stop, transcribe the webm/opus recording."""
    pytest.importorskip("av", reason="PyAV decodes the browser's webm recording")
    fake_microphone = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, args=FLAGS + fake_microphone, headless=True
    )
    try:
        page = browser.new_page()
        page.set_default_timeout(60_000)
        sign_in(page, live.url, KEY, "#asr-model option[value='mms-tiny-all']")
        page.click("#record")
        page.wait_for_function("Number(document.getElementById('record').dataset.chunks) >= 3")
        page.click("#record")  # stop
        page.wait_for_function(
            "document.getElementById('record-state').textContent.startsWith('Recorded')"
        )
        page.fill("#language", "eng")
        page.click("#transcribe")
        page.wait_for_selector("#transcript-text")
        summary = page.inner_text("#transcript")
    finally:
        browser.close()
    assert "Language: english [eng]" in summary
    seconds = float(summary.split(" · ")[1].split(" s")[0])
    assert 0.5 < seconds < 30  # the recording, decoded from webm by the server


def test_page_identifies_the_language(live, page, tmp_path):
    clip = tmp_path / "clip.wav"
    buffer = io.BytesIO()
    soundfile.write(buffer, speech(1.2, seed=3), 16_000, format="WAV")
    clip.write_bytes(buffer.getvalue())
    sign_in(page, live.url, KEY, "#lid-model option[value='mms-lid-tiny']")
    page.set_input_files("#lid-file", str(clip))
    page.fill("#top-k", "2")
    page.click("#identify")
    page.wait_for_selector("#lid-result:not([hidden])")
    rows = page.query_selector_all("#lid-result tbody tr")
    assert len(rows) == 2
    assert page.inner_text("#lid-status").startswith("Most probable: ")
    assert not page.is_visible("#demo-notice")  # these are not the demo checkpoints


def test_page_says_when_the_server_runs_the_demo_checkpoints(playwright):
    from mmspeech.demo import demo_checkpoint

    settings = ServerSettings(models={"mms-1b-all": str(demo_checkpoint("asr"))})
    with LiveServer(create_app(settings)) as server:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(server.url + "/")
            page.wait_for_selector("#demo-notice:not([hidden])")
            assert "demo checkpoints (mms-1b-all)" in page.inner_text("#demo-notice")
        finally:
            browser.close()
