"""``python -m mmspeech``: the first command line's form (no subcommand) still transcribes."""

from __future__ import annotations

import subprocess
import sys

import soundfile as sf
from conftest import speech

from mmspeech import pipeline


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmspeech", *args], capture_output=True, text=True, timeout=120
    )


def test_transcribes_files_with_an_adapter(mms_dir, tmp_path):
    paths = []
    for seed in (1, 2):
        path = tmp_path / f"clip{seed}.wav"
        sf.write(path, speech(0.5, seed), 16_000)
        paths.append(str(path))
    result = run(*paths, "--model", str(mms_dir), "--lang", "fra")
    assert result.returncode == 0, result.stderr
    asr = pipeline(model=str(mms_dir), model_kwargs={"target_lang": "fra"})
    # the CLI drops the sentence tokens <s> </s> a random tiny model emits; the rest is the same
    texts = [
        " ".join(asr(path)["text"].replace("<s>", "").replace("</s>", "").split()) for path in paths
    ]
    expected = [f"{path}\t{text}" for path, text in zip(paths, texts, strict=True)]
    assert result.stdout.splitlines() == expected


def test_bad_input_is_one_clear_line(mms_dir, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wav file")
    result = run(str(broken), "--model", str(mms_dir))
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert "broken.wav" in result.stderr
    result = run(str(tmp_path / "absent.wav"), "--model", "facebook/not-downloaded")
    assert result.returncode == 1 and "no such audio file" in result.stderr
    result = run(str(broken), "--model", str(mms_dir), "--lang", "xyz")
    assert result.returncode == 1 and "xyz" in result.stderr and "Traceback" not in result.stderr
