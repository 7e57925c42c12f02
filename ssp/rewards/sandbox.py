"""Host side of the code sandbox: choose the isolation backend, keep a pool of zygotes, run jobs.

Backends (docs/rewards.md states exactly what each guarantees):
- `bwrap` (bubblewrap, `apt-get install bubblewrap`): new user (when not root), pid, network, IPC, UTS and cgroup
  namespaces; a file system made of read-only binds of /usr and the Python installation plus private tmpfs /tmp and
  /dev/shm, so nothing else of the host is visible; the sandbox dies with its parent.
- `process` (fallback, no extra package): the zygote unshares mount, network, IPC and UTS namespaces itself (and a
  user namespace when not root), remounts the host file system read-only and mounts a private tmpfs on /tmp; host
  files stay readable with the sandbox user's permissions. Each step that the machine refuses is reported.
Both add: a separate unprivileged uid when started as root, rlimits, a seccomp filter (libseccomp), a clean
environment, per-run process groups and a sweep of every leftover process, and output caps.

`SSP_SANDBOX=bwrap|process` forces a backend (an unusable forced backend is an error); the default picks the
strongest one that passes a probe and logs which, with a warning when it is the weaker one.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from ssp.rewards._pool import TaskFailure, WorkerPool, WorkerStartError, workers_per_process

logger = logging.getLogger(__name__)

HARNESS_SOURCE = Path(__file__).with_name("_sandbox_harness.py").read_text()
RUNNER_SOURCE = Path(__file__).with_name("_sandbox_runner.py").read_text()
# The sandbox sees none of ssp's files: both sources travel on the command line, and this loads them.
BOOTSTRAP = (
    "import sys, types\n"
    "harness = sys.modules['_sandbox_harness'] = types.ModuleType('_sandbox_harness')\n"
    "exec(compile(sys.argv[1], '_sandbox_harness.py', 'exec'), harness.__dict__)\n"
    "exec(compile(sys.argv[2], '_sandbox_runner.py', 'exec'), {'__name__': '__main__'})\n"
)
BACKENDS = ("bwrap", "process")
# Numeric settings that only tell OpenBLAS how to run on this CPU (older builds crash without them); no secrets.
PASSED_THROUGH_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of every program run (the time limit is per call: `timeout`)."""

    memory_mb: int = 2048
    """Address space (RLIMIT_AS) of a run."""
    file_size_mb: int = 16
    """Largest file a run may write (RLIMIT_FSIZE); stdout counts as a file."""
    tmp_size_mb: int = 256
    """Size of the sandbox's private /tmp (and /dev/shm); runs write there and in their own folder inside it."""
    open_files: int = 256
    processes: int = 32
    """Processes and threads a run may have at once (RLIMIT_NPROC, in the run's own user or namespace)."""


def sandbox_env() -> dict[str, str]:
    """The whole environment of a sandboxed program: nothing of the host's is inherited."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",  # set iteration order, and so some tests' outcomes, must not vary between runs
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    env.update({key: os.environ[key] for key in PASSED_THROUGH_ENV if key in os.environ})
    return env


def _python_roots() -> list[str]:
    """Folders the interpreter and its installed packages live in (bound read-only into the sandbox)."""
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    candidates.add(str(Path(os.path.realpath(sys.executable)).parent.parent))
    roots = sorted({os.path.realpath(c) for c in candidates} | candidates)
    kept: list[str] = []
    for root in roots:
        if root in ("/", "/usr") or not os.path.isdir(root) or root.startswith("/usr/"):
            continue
        if any(root.startswith(k.rstrip("/") + "/") for k in kept):
            continue
        kept.append(root)
    return kept


def _bwrap_argv(bwrap: str, limits: SandboxLimits, as_root: bool) -> list[str]:
    tmp_bytes = str(limits.tmp_size_mb << 20)
    argv = [bwrap, "--die-with-parent", "--new-session"]
    # As root, bwrap makes the namespaces itself and the zygote then drops to an unprivileged uid; otherwise it needs
    # a user namespace.
    argv += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not as_root:
        argv.append("--unshare-user")
    argv += ["--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
    # The private /tmp and /dev/shm come before Python's folders: a virtualenv under /tmp is mounted on top of them,
    # not hidden by them.
    argv += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", tmp_bytes, "--tmpfs", "/dev/shm"]
    argv += ["--perms", "1777", "--size", tmp_bytes, "--tmpfs", "/tmp"]
    roots = _python_roots()
    parents: list[str] = []
    for root in roots:  # bwrap would create the folders above a bind mount with mode 0700, untraversable
        for parent in reversed(Path(root).parents[:-1]):
            if str(parent) not in parents:
                parents.append(str(parent))
    for parent in parents:
        argv += ["--perms", "0755", "--dir", parent]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "alternatives"):
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for root in roots:
        argv += ["--ro-bind", root, root]
    return argv + ["--chdir", "/"]


class Sandbox:
    """A pool of zygotes behind one backend; `run(jobs, deadlines)` returns each job's reply or TaskFailure."""

    def __init__(self, backend: str, workers: int, limits: SandboxLimits):
        if backend not in BACKENDS:
            raise ValueError(f"unknown sandbox backend {backend!r}; known: {', '.join(BACKENDS)}")
        self.backend = backend
        self.limits = limits
        self.as_root = os.geteuid() == 0
        self._scratch: list[str] = []
        bwrap = shutil.which("bwrap")
        if backend == "bwrap" and bwrap is None:
            raise WorkerStartError("bubblewrap is not installed (apt-get install bubblewrap)")
        self._bwrap = bwrap
        self.pool = WorkerPool(self._argv, workers, name=f"code sandbox ({backend})", env=sandbox_env(), cwd="/")
        try:
            self.pool.start()  # start-up failures surface here, with the zygote's reason
        except BaseException:
            self.close()
            raise
        self.features = (self.pool.hello or {}).get("features", {})
        if backend == "bwrap":  # made by bwrap before the zygote started, so it cannot see them itself
            self.features["namespaces"] = ["mount", "pid", "net", "ipc", "uts"] + ([] if self.as_root else ["user"])

    def _argv(self) -> list[str]:
        config = {
            "unshare": self.backend == "process",
            "own_pid_namespace": self.backend == "bwrap",
            # Each zygote its own uid: rlimits on processes then cannot be exhausted by a neighbour's fork bomb.
            "uid": random.randrange(1_000_000, 2_000_000_000) if self.as_root else None,
            "tmp_bytes": self.limits.tmp_size_mb << 20,
            "processes": self.limits.processes,
            "python_roots": _python_roots(),
        }
        if self.backend == "bwrap":
            config["workroot"] = "/tmp/ssp-sandbox"
            prefix = _bwrap_argv(self._bwrap, self.limits, self.as_root)
        else:
            # Normally inside the zygote's own tmpfs; if it cannot mount one, this host folder is used and removed.
            config["workroot"] = tempfile.mkdtemp(prefix="ssp-sandbox-")
            if config["uid"] is not None:
                os.chown(config["workroot"], config["uid"], config["uid"])
            self._scratch.append(config["workroot"])
            prefix = []
        return [
            *prefix,
            sys.executable,
            "-s",
            "-P",
            "-c",
            BOOTSTRAP,
            HARNESS_SOURCE,
            RUNNER_SOURCE,
            json.dumps(config),
        ]

    def run(self, jobs: list[dict], deadlines: list[float]) -> list[dict | TaskFailure]:
        return self.pool.run(jobs, deadlines)

    def close(self) -> None:
        self.pool.close()
        for path in self._scratch:
            shutil.rmtree(path, ignore_errors=True)

    def describe(self) -> str:
        f = self.features
        host_files = "hidden" if self.backend == "bwrap" else ("read-only" if f.get("read_only_root") else "WRITABLE")
        parts = [
            f"namespaces: {', '.join(f.get('namespaces') or []) or 'none'}",
            f"seccomp: {'yes' if f.get('seccomp') else 'no'}",
            f"host files: {host_files}",
            f"private /tmp: {'yes' if f.get('private_tmp') or self.backend == 'bwrap' else 'NO'}",
            f"process limit: {f.get('process_limit') or 'none'}",
        ]
        if f.get("uid") is not None:
            parts.append(f"uid {f['uid']}")
        notes = "; ".join(f.get("notes") or [])
        return f"{self.backend} ({', '.join(parts)}){'; ' + notes if notes else ''}"


_sandbox: Sandbox | None = None
_sandbox_lock = threading.Lock()


def default_workers() -> int:
    """`SSP_CODE_WORKERS`, else the CPUs this process may use shared among the node's training processes (max 16)."""
    return workers_per_process("SSP_CODE_WORKERS", 16)


def _probe(sandbox: Sandbox) -> None:
    """Run a real program through the whole path; raises unless it works."""
    job = {
        "kind": "stdio",
        "program": "print(input()[::-1])",
        "prelude": "",
        "runs": [{"stdin": "ko\n", "output_limit": 100}],
        "limits": job_limits(sandbox.limits, 10.0),
    }
    reply = sandbox.run([job], [30.0])[0]
    if isinstance(reply, TaskFailure) or reply.get("runs", [{}])[0].get("stdout") != "ok\n":
        raise WorkerStartError(f"probe program failed: {reply}")


def job_limits(limits: SandboxLimits, timeout: float) -> dict:
    return {
        "timeout": float(timeout),
        "memory_bytes": limits.memory_mb << 20,
        "file_bytes": limits.file_size_mb << 20,
        "open_files": limits.open_files,
    }


def start_sandbox(backend: str, limits: SandboxLimits | None = None, workers: int | None = None) -> Sandbox:
    """A new sandbox with this backend, probed with a real program; the caller closes it."""
    sandbox = Sandbox(backend, workers or default_workers(), limits or SandboxLimits())
    try:
        _probe(sandbox)
    except BaseException:
        sandbox.close()
        raise
    return sandbox


def get_sandbox() -> Sandbox:
    """The process-wide sandbox, started at first use with the strongest backend that works here."""
    global _sandbox
    with _sandbox_lock:
        if _sandbox is not None and _sandbox.pool.owner_pid == os.getpid():
            return _sandbox
        _sandbox = None
        if not sys.platform.startswith("linux"):
            raise RuntimeError(f"the code sandbox needs Linux (namespaces, seccomp, rlimits); this is {sys.platform}")
        limits = SandboxLimits()
        forced = os.environ.get("SSP_SANDBOX", "auto")
        if forced not in ("auto", *BACKENDS):
            raise ValueError(f"SSP_SANDBOX={forced!r}; use one of auto, {', '.join(BACKENDS)}")
        if forced != "auto":
            _sandbox = start_sandbox(forced, limits)
        else:
            try:
                _sandbox = start_sandbox("bwrap", limits)
            except (WorkerStartError, OSError) as error:
                logger.warning(
                    "code sandbox: bubblewrap unavailable (%s); falling back to weaker isolation (host files stay "
                    "readable by sandboxed programs). Install it for full isolation: apt-get install bubblewrap",
                    str(error)[:500],
                )
                _sandbox = start_sandbox("process", limits)
        log = logger.info if _sandbox.backend == "bwrap" else logger.warning
        log("code sandbox: %s, %d zygotes", _sandbox.describe(), _sandbox.pool.size)
        return _sandbox


def sandbox_info() -> dict:
    """Backend, isolation features and limits of the running sandbox (starts it if needed)."""
    sandbox = get_sandbox()
    return {"backend": sandbox.backend, "features": sandbox.features, "limits": asdict(sandbox.limits)}


def shutdown_sandbox() -> None:
    global _sandbox
    with _sandbox_lock:
        if _sandbox is not None and _sandbox.pool.owner_pid == os.getpid():
            _sandbox.close()
        _sandbox = None


atexit.register(shutdown_sandbox)
