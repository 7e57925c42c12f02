#!/usr/bin/env bash
# Resolve the GPU profile (constraints/gpu.txt with ssp's vllm and dev extras) for Linux x86_64 / CPython 3.11 with
# pip's resolver, downloading metadata only: no CUDA wheel is fetched (fast-deps reads each wheel's metadata by
# range requests; about 90 MB of index pages and metadata, about a minute). DeepSpeed publishes only an sdist:
# its pure-Python wheel is built here first and offered to the resolver. Exit status 0: resolved.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
"$work/venv/bin/python" -m pip wheel --quiet --no-deps --wheel-dir "$work/wheels" \
    "$(grep '^deepspeed==' constraints/gpu.txt)"
platforms=()
for minor in $(seq 35 -1 17); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64)
# PyPI only: a machine's pip config or PIP_FIND_LINKS may cap torch or offer a local CPU build.
env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null "$work/venv/bin/python" -m pip install --dry-run --ignore-installed --only-binary=:all: \
    "${platforms[@]}" --python-version 3.11 --implementation cp --target "$work/target" --no-cache-dir \
    --use-feature=fast-deps --find-links "$work/wheels" --report "$work/report.json" --quiet \
    -c constraints/gpu.txt -r constraints/gpu.txt ".[vllm,dev]"
"$work/venv/bin/python" - "$work/report.json" <<'PY'
import json, sys
installed = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in json.load(open(sys.argv[1]))["install"]}
wanted = {"torch": "2.13.0", "vllm": "0.31.0", "transformers": "5.17.0", "trl": "1.16.0"}
for name, version in wanted.items():
    assert installed.get(name) == version, f"{name}: resolved {installed.get(name)}, expected {version}"
print(f"GPU profile resolves: {len(installed)} packages; " + ", ".join(f"{n} {installed[n]}" for n in wanted))
PY
