"""What each backend sets up and how it says so: the environment, the isolation it reports, the one line it prints at
start-up, and a Python that lives under /tmp (a clone's virtualenv), which the private /tmp must not hide."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

import pytest
from sandbox_cases import backend_skip_reason, run_one

from ssp.sandbox import SandboxLimits, backends, sandbox_env, start_sandbox
from ssp.sandbox.backends import BACKENDS

REPO = Path(__file__).resolve().parents[2]


def test_sandbox_environment_is_clean(sandbox):
    expected = [{"input": "", "output": " ".join(sorted(sandbox_env()))}]
    assert run_one(sandbox, "import os\nprint(*sorted(os.environ))", expected).passed


def test_isolation_features_are_reported(sandbox):
    features = sandbox.features
    assert features["seccomp"] is True
    assert "net" in features["namespaces"]
    if os.geteuid() == 0:
        assert features["uid"] >= 1_000_000


def test_a_python_under_tmp_is_mounted_over_the_private_tmp(monkeypatch, tmp_path):
    # A virtualenv in /tmp (a CI clone, a scratch checkout) must stay visible: bwrap applies mounts in order, so the
    # private /tmp comes first and Python's folders on top of it.
    venv_folder = tmp_path / ".venv"
    venv_folder.mkdir()
    monkeypatch.setattr(backends, "python_roots", lambda: [str(venv_folder)])
    argv = backends.bwrap_argv("bwrap", SandboxLimits().tmp_size_mb, as_root=True)
    tmpfs_tmp = next(i for i in range(len(argv) - 1) if argv[i : i + 2] == ["--tmpfs", "/tmp"])
    bind_venv = next(
        i for i in range(len(argv) - 2) if argv[i : i + 3] == ["--ro-bind", str(venv_folder), str(venv_folder)]
    )
    assert tmpfs_tmp < bind_venv
    assert argv[-2:] == ["--chdir", "/"]


@pytest.fixture
def venv_under_tmp():
    """A virtualenv directly under /tmp (where a clone's `make venv` puts it) with a module found nowhere else."""
    folder = Path(tempfile.mkdtemp(prefix="ssp-venv-test-", dir="/tmp"))
    env = folder / ".venv"
    venv.EnvBuilder(symlinks=True, with_pip=False).create(env)
    site_packages = next(env.glob("lib/python3*/site-packages"))
    (site_packages / "ssp_only_in_this_venv.py").write_text("WHERE = 'venv-under-tmp'\n")
    yield env
    shutil.rmtree(folder)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_virtualenv_under_tmp_is_visible_in_the_sandbox(backend, venv_under_tmp, monkeypatch):
    # The sandbox runs the virtualenv's interpreter, as when ssp itself is installed there: its standard library
    # (hashlib is not pre-imported) and its site-packages must both be importable under the private /tmp.
    reason = backend_skip_reason(backend)
    if reason:
        pytest.skip(reason)
    for name in ("executable", "prefix", "exec_prefix"):
        value = venv_under_tmp / "bin" / "python" if name == "executable" else venv_under_tmp
        monkeypatch.setattr(sys, name, str(value))
    box = start_sandbox(backend, SandboxLimits(memory_mb=512), workers=1)
    monkeypatch.undo()
    try:
        program = (
            "import hashlib, sys, ssp_only_in_this_venv\n"
            "print(ssp_only_in_this_venv.WHERE, hashlib.sha256(b'x').hexdigest(), sys.prefix)\n"
        )
        expected = f"venv-under-tmp {hashlib.sha256(b'x').hexdigest()} {venv_under_tmp}"
        for _ in range(2):  # the second run comes after the first one's clean-up of /tmp
            result = run_one(box, program, [{"input": "", "output": expected}])
            assert (result.passed, result.status, result.message) == (True, "ok", "")
        site_packages = next(venv_under_tmp.glob("lib/python3*/site-packages"))
        writer = f"open('{site_packages}/ssp_evil.pth', 'w').write('import os')\nprint('escaped')\n"
        assert run_one(box, writer, [{"input": "", "output": "escaped"}]).status == "error"
    finally:
        box.close()
    assert sorted(p.name for p in site_packages.iterdir() if p.name.startswith("ssp_")) == ["ssp_only_in_this_venv.py"]


ROOT_FEATURES = {"seccomp": True, "read_only_root": True, "private_tmp": True, "process_limit": 32, "notes": []}


def test_the_isolation_line_of_bwrap():
    features = dict(ROOT_FEATURES, namespaces=["mount", "pid", "net", "ipc", "uts"], uid=1234567)
    assert backends.isolation_line("bwrap", features) == (
        "sandbox: bwrap (namespaces: mount, pid, net, ipc, uts; seccomp; host files hidden; private /tmp; "
        "rlimits (32 processes); uid 1234567)"
    )


def test_the_isolation_line_of_the_fallback():
    features = dict(ROOT_FEATURES, namespaces=["mount", "net", "ipc", "uts", "user"])
    assert backends.isolation_line("process", features, "bubblewrap not installed") == (
        "sandbox: process fallback (bubblewrap not installed; namespaces: mount, net, ipc, uts, user; seccomp; "
        "host files readable, read-only; private /tmp; rlimits (32 processes)) - see docs/sandbox.md"
    )


def test_the_isolation_line_names_what_the_machine_refused_in_one_line():
    features = {
        "namespaces": [],
        "seccomp": False,
        "read_only_root": False,
        "private_tmp": False,
        "process_limit": None,
        "notes": ["no namespaces (unshare: Operation not permitted)", "no seccomp filter (libseccomp.so.2: missing)"],
    }
    why = "bubblewrap failed: bwrap: No permissions to create a new namespace\nsecond line"
    assert backends.isolation_line("process", features, why) == (
        "sandbox: process fallback (bubblewrap failed: bwrap: No permissions to create a new namespace second line; "
        "namespaces: none; NO seccomp; host files WRITABLE; NO private /tmp; rlimits (no process limit); "
        "no namespaces (unshare: Operation not permitted); no seccomp filter (libseccomp.so.2: missing)) "
        "- see docs/sandbox.md"
    )


PRINT_FEATURES = (
    "import json\n"
    "from ssp.rewards.code import check_program\n"
    "from ssp.sandbox import get_sandbox\n"
    "get_sandbox()\n"
    "assert check_program('print(input())', [{'input': 'a', 'output': 'a'}]).passed\n"
    "print(json.dumps(get_sandbox().features))\n"
)


def _start_in_a_new_process(env):
    """(features, stderr) of a fresh process that starts the process-wide sandbox, then scores a program with it."""
    env = dict(env, SSP_CODE_WORKERS="1")
    done = subprocess.run(
        [sys.executable, "-c", PRINT_FEATURES], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


def test_the_process_wide_sandbox_prints_its_isolation_once_per_process():
    features, stderr = _start_in_a_new_process(dict(os.environ, SSP_SANDBOX="process"))
    assert stderr == backends.isolation_line("process", features, "SSP_SANDBOX=process") + "\n"


def test_a_bubblewrap_that_fails_falls_back_and_says_why(tmp_path):
    # Installed but refused by the machine (no unprivileged user namespaces): bwrap prints its reason and exits 1.
    fake = tmp_path / "bin" / "bwrap"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key != "SSP_SANDBOX"}
    env["PATH"] = f"{fake.parent}:{env.get('PATH', '/usr/bin:/bin')}"
    features, stderr = _start_in_a_new_process(env)
    why = (
        "bubblewrap failed: code sandbox (bwrap) worker exited during start-up (code 1); "
        "stderr: bwrap: No permissions to create new namespace"
    )
    assert stderr == backends.isolation_line("process", features, why) + "\n"
