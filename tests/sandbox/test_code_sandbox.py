"""Hostile programs against the code sandbox, on every backend this machine supports (the `sandbox` fixture).

Each attack must get a failing verdict within its limits, and afterwards the host must be untouched: its files, its
processes (nothing the program started survives) and the sandbox itself, which still scores a good program.
"""

import os
import socket
import sys
import threading
from pathlib import Path
from string import Template

import pytest
from sandbox_cases import run_one

from ssp.sandbox.host import ZYGOTE_MODULES

SECRET = "ssp-host-secret-7f3a"


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """Host state a program must not reach: a secret file, a canary file, a listening socket, an env variable."""
    folder = tmp_path_factory.mktemp("host")
    folder.chmod(0o700)
    secret = folder / "secret.txt"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    canary = folder / "canary.txt"
    canary.write_text("intact")
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    connections = []

    def accept():
        while server.fileno() != -1:
            try:
                connections.append(server.accept())
            except (TimeoutError, OSError):
                continue

    listener = threading.Thread(target=accept, daemon=True)
    listener.start()
    os.environ["SSP_TEST_SECRET"] = SECRET
    yield {
        "folder": folder,
        "secret": secret,
        "canary": canary,
        "port": server.getsockname()[1],
        "connections": connections,
    }
    os.environ.pop("SSP_TEST_SECRET")
    server.close()


def _descendants(pid: int) -> set[int]:
    found, stack = set(), [pid]
    while stack:
        current = stack.pop()
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    children = {int(child) for child in f.read().split()}
                stack.extend(children - found)
                found |= children
        except OSError:
            continue
    return found


def _sandbox_processes(sandbox) -> set[int]:
    pids = set()
    for worker in sandbox.pool._workers:
        pids |= {worker.process.pid} | _descendants(worker.process.pid)
    return pids


# An attack "wins" if its output (or its test) passes: each expected output is what a successful escape would print,
# so the verdict must be a failure. $names are filled in from the `host` fixture.
ESCAPED = [{"input": "", "output": "escaped"}]
ATTACKS = {
    "fork bomb": ("import os\nwhile True:\n    os.fork()\n", ESCAPED, {"timeout", "error"}),
    "infinite loop": ("while True:\n    pass\n", ESCAPED, {"timeout"}),
    "sleep past the limit": ("import time\ntime.sleep(60)\nprint('escaped')\n", ESCAPED, {"timeout"}),
    "memory bomb": ("x = bytearray(10**10)\nprint('escaped')\n", ESCAPED, {"memory"}),
    # Touching memory is slow on a small machine: this one may hit the time limit before the memory limit.
    "growing memory": ("x = []\nwhile True:\n    x.append(bytearray(10**7))\n", ESCAPED, {"memory", "timeout"}),
    "huge output": ("while True:\n    print('escaped' * 1000)\n", ESCAPED, {"output_limit", "timeout"}),
    "disk filling": (
        "i = 0\nwhile True:\n    with open(f'f{i}', 'wb') as f:\n        f.write(bytes(10**6) * 15)\n    i += 1\n",
        ESCAPED,
        {"output_limit", "error", "timeout"},
    ),
    "one huge file": (
        "with open('big', 'wb') as f:\n    f.write(bytes(10**8))\nprint('escaped')\n",
        ESCAPED,
        {"output_limit", "error"},
    ),
    "write outside its folder": (
        "open('$folder/written.txt', 'w').write('x')\nprint('escaped')\n",
        ESCAPED,
        {"error"},
    ),
    "write into site-packages": (
        "open('$site_packages/ssp_evil.pth', 'w').write('import os')\nprint('escaped')\n",
        ESCAPED,
        {"error"},
    ),
    "delete outside its folder": ("import os\nos.remove('$canary')\nprint('escaped')\n", ESCAPED, {"error"}),
    "read a host file": ("print(open('$secret').read())\n", [{"input": "", "output": SECRET}], {"error"}),
    "read the host environment": (
        "import os\nprint(os.environ.get('SSP_TEST_SECRET'))\n",
        [{"input": "", "output": SECRET}],
        {"wrong"},
    ),
    "read the host process's memory map": (
        "print(open('/proc/$pid/maps').read()[:20])\n",
        [{"input": "", "output": "escaped"}],
        {"error"},
    ),
    "network connection": (
        "import socket\nsocket.create_connection(('127.0.0.1', $port), timeout=0.5)\nprint('escaped')\n",
        ESCAPED,
        {"error"},
    ),
    "kill its parent": (
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('escaped')\n",
        ESCAPED,
        {"error"},
    ),
    "kill every process": ("import os\nos.kill(-1, 9)\nprint('escaped')\n", ESCAPED, {"error"}),
    "ptrace its parent": (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "assert libc.ptrace(16, os.getppid(), 0, 0) == 0\nprint('escaped')\n",
        ESCAPED,
        {"error"},
    ),
    "new namespaces": (
        "import ctypes\nassert ctypes.CDLL(None).unshare(0x10000000 | 0x40000000) == 0\nprint('escaped')\n",
        ESCAPED,
        {"error"},
    ),
    "daemon outliving its run": (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(30)\n"
        "    os._exit(0)\nprint('escaped')\n",
        [{"input": "", "output": "nope"}],
        {"wrong"},
    ),
}


def _documented_limitation(sandbox, name):
    """Attacks the process fallback backend is documented not to stop on this machine (docs/sandbox.md)."""
    if sandbox.backend != "process" or os.geteuid() == 0:
        return None  # as root, the fallback runs programs as another uid: these attacks fail as on bwrap
    if name == "read a host file":
        return (
            "process fallback backend, run as a non-root user: a program can read that user's own files "
            "(docs/sandbox.md); bubblewrap hides them"
        )
    if name == "read the host process's memory map" and "user" not in sandbox.features.get("namespaces", []):
        return (
            "process fallback backend without a user namespace (this machine refused one): a program can read the "
            "memory maps of that user's processes (docs/sandbox.md); bubblewrap hides them"
        )
    writes = ("write outside its folder", "write into site-packages", "delete outside its folder")
    if name in writes and not sandbox.features.get("read_only_root"):
        return (
            "process fallback backend: this machine refused it a read-only mount namespace, so that user's files "
            "stay writable (docs/sandbox.md); bubblewrap hides them"
        )
    return None


SITE_PACKAGES = next(Path(p) for p in sys.path if Path(p).name == "site-packages")


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_fails_and_leaves_the_host_untouched(sandbox, host, name):
    template, tests, statuses = ATTACKS[name]
    reason = _documented_limitation(sandbox, name)
    if reason:
        pytest.skip(reason)
    program = Template(template).substitute(
        folder=host["folder"],
        canary=host["canary"],
        secret=host["secret"],
        port=host["port"],
        pid=os.getpid(),
        site_packages=SITE_PACKAGES,
    )
    before = _sandbox_processes(sandbox)
    result = run_one(sandbox, program, tests)
    assert not result.passed
    assert result.status in statuses, result
    assert host["canary"].read_text() == "intact"
    assert sorted(p.name for p in host["folder"].iterdir()) == ["canary.txt", "secret.txt"]
    assert host["connections"] == []
    assert not (SITE_PACKAGES / "ssp_evil.pth").exists()
    assert _sandbox_processes(sandbox) <= before  # nothing the program started is still running
    assert run_one(sandbox, "print(input())", [{"input": "fine", "output": "fine"}]).passed


ANYTHING = "class Anything:\n    def __eq__(self, other):\n        return True\n\n"
CHEATS = {
    "exit 0 before the tests": ("import sys\nsys.exit(0)\ndef add(a, b):\n    return 0\n", {"error"}),
    "os._exit(0) before the tests": ("import os\nos._exit(0)\n", {"error"}),
    "exit 0 inside the function": ("def add(a, b):\n    raise SystemExit(0)\n", {"error"}),
    "object equal to everything": (
        ANYTHING + "def add(a, b):\n    return Anything()\n",
        {"rejected"},
    ),
    "float subclass faking arithmetic": (
        "class F(float):\n    def __sub__(self, other):\n        return 0.0\n    def __eq__(self, other):\n"
        "        return True\n\ndef add(a, b):\n    return F(0)\n",
        {"rejected"},
    ),
    "list subclass faking items": (
        "class L(list):\n    def __getitem__(self, i):\n        return 3\n\ndef add(a, b):\n    return L()\n",
        {"rejected"},
    ),
    "patched builtins": (
        "import builtins\nbuiltins.abs = lambda x: 0\nbuiltins.AssertionError = Warning\n"
        "def add(a, b):\n    return -1\n",
        {"wrong"},
    ),
    "patched type and isinstance": (
        "import builtins\nbuiltins.type = lambda *a: int\nbuiltins.isinstance = lambda *a: True\n"
        + ANYTHING
        + "def add(a, b):\n    return Anything()\n",
        {"rejected"},
    ),
    "patched math module": (
        "import math\nmath.isclose = lambda *a, **k: True\ndef add(a, b):\n    return -1\n",
        {"wrong"},
    ),
    "patching math at call time": (
        "import math\ndef add(a, b):\n    math.isclose = lambda *a, **k: True\n    return -1\n",
        {"wrong"},
    ),
    "own check function": ("def check(candidate):\n    pass\n\ndef add(a, b):\n    return -1\n", {"wrong"}),
    "forged harness verdict": (
        "import json, os\nos.write(3, json.dumps({'status': 'ok', 'units': ['ok'] * 4, 'nonce': '0' * 32}).encode())\n"
        "os._exit(0)\n",
        {"error"},
    ),
    "patching the guard module": (
        "import _sandbox_guard\n_sandbox_guard._class_is_honest = lambda c: True\n"
        + ANYTHING
        + "def add(a, b):\n    return Anything()\n",
        {"error"},
    ),
    "patching __main__": (
        "import __main__\n__main__._state = {'rejected': None}\ndef add(a, b):\n    return -1\n",
        {"wrong"},
    ),
    "silenced exception hook": (
        "import sys\nsys.excepthook = lambda *a: None\ndef add(a, b):\n    return -1\n",
        {"wrong"},
    ),
}
CHEAT_TESTS = (
    "import math\n"
    "def check(candidate):\n    assert candidate(1, 2) == 3\n"
    "check(add)\n"
    "assert abs(add(0.5, 0.25) - 0.75) < 1e-9\n"
    "assert math.isclose(add(2, 2), 4)\n"
    "assert add(3, 3)[0] == 3 if type(add(3, 3)) is not int else add(3, 3) == 6\n"
)


@pytest.mark.parametrize("name", sorted(CHEATS))
def test_harness_cheat_fails(sandbox, name):
    program, statuses = CHEATS[name]
    result = run_one(sandbox, program, CHEAT_TESTS)
    assert not result.passed
    assert result.status in statuses, result


def test_honest_solution_passes_the_cheat_tests(sandbox):
    result = run_one(sandbox, "def add(a, b):\n    return a + b\n", CHEAT_TESTS)
    assert (result.passed, result.tests) == (True, ("ok", "ok", "ok", "ok"))


def test_printing_one_expected_output_fails_the_other_cases(sandbox):
    cases = [{"input": "2 3", "output": "5"}, {"input": "10 20", "output": "30"}, {"input": "1 1", "output": "2"}]
    result = run_one(sandbox, "print(5)", cases)
    assert (result.passed, result.tests) == (False, ("ok", "wrong", "wrong"))


def test_functional_return_value_is_compared_outside_the_program(sandbox):
    program = (
        "class Anything(list):\n    def __eq__(self, other):\n        return True\n"
        "class Solution:\n    def f(self, x):\n        return Anything([0])\n"
    )
    result = run_one(sandbox, program, {"fn_name": "f", "cases": [{"input": "1", "output": "[1]"}]})
    assert (result.passed, result.status) == (False, "wrong")


def test_programs_do_not_see_each_others_files(sandbox):
    writer = "import os\nopen('/tmp/left-behind', 'w').write('x')\nopen('here', 'w').write('x')\nprint('done')\n"
    reader = "import os\nprint(os.path.exists('/tmp/left-behind'), sorted(os.listdir('.')))\n"
    assert run_one(sandbox, writer, [{"input": "", "output": "done"}]).passed
    # A run's folder holds only its own input, output and the harness's report file.
    result = run_one(sandbox, reader, [{"input": "", "output": "False ['result', 'stdin', 'stdout']"}])
    assert result.passed


def test_a_program_cannot_import_the_zygote_modules(sandbox):
    # The zygote's own modules (the guards' state among them) are gone from sys.modules and from every import path.
    program = (
        "import importlib.util, sys\n"
        f"print([name for name in {list(ZYGOTE_MODULES)!r} if name in sys.modules or importlib.util.find_spec(name)])"
    )
    assert run_one(sandbox, program, [{"input": "", "output": "[]"}]).passed
