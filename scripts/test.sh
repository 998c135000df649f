#!/usr/bin/env bash
# Installs everything the test suite needs into .venv (system packages too, when run as root),
# then runs lint, the type checker and the tests. This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(ffmpeg espeak-ng chromium chromium-driver)
missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "note: system packages ${missing[*]} are missing; tests that need them will be skipped" >&2
    fi
fi

python3 -m venv .venv
.venv/bin/pip install -q -c constraints.txt -e ".[test]"

.venv/bin/ruff check
.venv/bin/ruff format --check
.venv/bin/mypy
.venv/bin/python -m pytest "$@"

# The suite without the oracle: every test not marked `oracle` must pass where transformers is
# absent. A second venv would reinstall torch for that (gigabytes); instead the same venv runs
# them with MMSPEECH_TEST_WITHOUT_ORACLE=1, which makes `import transformers` fail in the test
# process (tests/conftest.py puts None in sys.modules) and turns any unmarked test that skips
# for want of transformers into a failure, so the subset cannot shrink silently. What this does
# not catch is a dependency that only transformers pulls in: mmspeech's own are declared in
# pyproject.toml and checked by `pip install` above.
MMSPEECH_TEST_WITHOUT_ORACLE=1 .venv/bin/python -m pytest -q -m "not oracle" -p no:cacheprovider
