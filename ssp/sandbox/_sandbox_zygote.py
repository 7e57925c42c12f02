"""Inside the sandbox: the zygote, a long-lived process that runs each untrusted program in a fork.

Standard library only. The host (`ssp.sandbox.host`) starts `python -s -P -c BOOTSTRAP NAMES SOURCES... CONFIG`,
inside bubblewrap when available: the bootstrap loads `_sandbox_guard`, `_sandbox_child` and `_sandbox_isolation`
from the sources as modules and runs this file as `__main__`. Set-up, once per zygote (`_sandbox_isolation`):
- (`process` backend only) new mount, network, IPC and UTS namespaces (plus a user namespace when not root), the
  whole file system remounted read-only and a size-limited tmpfs on /tmp, /var/tmp and /dev/shm;
- started as root: switch to an unprivileged uid of the host's choosing (rlimits do not bind root);
- not dumpable (a program cannot ptrace it or open its file descriptors), child subreaper (it adopts every orphan, so
  nothing a program starts can outlive its run);
- pre-import common modules, snapshot the builtins and those modules for the test code.

Per run (one fork per test case, see `_sandbox_child.run_child`): a fresh session, stdin/stdout/stderr on files of
the job's own directory, every other file descriptor closed, rlimits, a seccomp filter, then prelude + program
(+ guarded test code). The zygote enforces the wall-clock limit, kills the run's whole process group, sweeps every
descendant, and reports what happened. Expected outputs never enter the sandbox: the host compares stdout and return
values.
"""

import json
import os
import select
import signal
import struct
import sys
import time

import _sandbox_child as child
import _sandbox_guard as guard
import _sandbox_isolation as isolation

_exit = os._exit  # bound before any program runs: a run's child leaves through it if the harness ever raised
_HEADER = struct.Struct(">I")


# ==================================================================================================================
# Protocol
# ==================================================================================================================


class Channel:
    def __init__(self, read_fd, write_fd):
        self.read_fd = read_fd
        self.write_fd = write_fd

    def recv(self):
        header = self._read(_HEADER.size)
        if header is None:
            return None
        body = self._read(_HEADER.unpack(header)[0])
        return None if body is None else json.loads(body)

    def send(self, payload):
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        data = _HEADER.pack(len(body)) + body
        while data:
            data = data[os.write(self.write_fd, data) :]

    def _read(self, size):
        data = bytearray()
        while len(data) < size:
            chunk = os.read(self.read_fd, size - len(data))
            if not chunk:
                return None
            data += chunk
        return bytes(data)


# ==================================================================================================================
# Runs
# ==================================================================================================================


def _wait(pid, deadline):
    """(status, rusage, timed_out): the run's exit status once it ends or is killed at the deadline."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    poller = select.poll()
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    pause = 0.001
    try:
        while True:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                return status, usage, False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _kill_group(pid)
                _, status, usage = os.wait4(pid, 0)
                return status, usage, True
            if pidfd is not None:
                poller.poll(max(1, int(remaining * 1000)))
            else:
                time.sleep(min(pause, remaining))
                pause = min(pause * 2, 0.02)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _kill_group(pid):
    for target in (-pid, pid):
        try:
            os.kill(target, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _sweep(own_pid_namespace):
    """Kill every process the run left behind: they were reparented to the zygote, its child subreaper."""
    me = os.getpid()
    if own_pid_namespace:
        try:
            os.kill(-1, signal.SIGKILL)  # everything in the sandbox's pid namespace but the zygote and init
        except ProcessLookupError:
            pass
    for _ in range(1000):
        try:
            with open(f"/proc/{me}/task/{me}/children") as f:
                children = [int(pid) for pid in f.read().split()]
        except OSError:
            children = []
        for pid in children:
            _kill_group(pid)
        reaped = False
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            reaped = True
        if not children and not reaped:
            return
        if children and not reaped:
            time.sleep(0.001)


def _read_capped(path, limit):
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError:
        return b"", False
    return data[:limit], len(data) > limit


def _signal_status(number):
    if number == signal.SIGXCPU:
        return "timeout", "CPU time limit"
    if number == signal.SIGXFSZ:
        return "output_limit", "file size limit"
    if number == signal.SIGKILL:
        return "memory", "killed (out of memory?)"
    return "error", f"killed by {signal.Signals(number).name}"


def _execute_run(job, run, compiled, workdir, index, config, seccomp):
    run_dir = os.path.join(workdir, f"run{index}")
    os.mkdir(run_dir, 0o700)
    paths = {name: os.path.join(run_dir, name) for name in ("stdin", "stdout", "result")}
    with open(paths["stdin"], "w", encoding="utf-8") as f:
        f.write(run.get("stdin", ""))
    stdin_fd = os.open(paths["stdin"], os.O_RDONLY)
    stdout_fd = os.open(paths["stdout"] if job["kind"] == "stdio" else os.devnull, os.O_WRONLY | os.O_CREAT, 0o600)
    null_fd = os.open(os.devnull, os.O_WRONLY)
    result_fd = os.open(paths["result"], os.O_RDWR | os.O_CREAT, 0o600)
    nonce = os.urandom(16).hex()
    timeout = job["limits"]["timeout"]
    started = time.monotonic()
    os.chdir(run_dir)
    pid = os.fork()
    if pid == 0:
        try:
            fds = (stdin_fd, stdout_fd, null_fd, result_fd)
            child.run_child(job, run, compiled, nonce, fds, seccomp, config["processes"])
        finally:
            _exit(70)
    os.chdir(workdir)
    for fd in (stdin_fd, stdout_fd, null_fd, result_fd):
        os.close(fd)
    status, usage, timed_out = _wait(pid, started + timeout)
    elapsed = time.monotonic() - started
    _kill_group(pid)
    _sweep(config["own_pid_namespace"])
    outcome = {"seconds": round(elapsed, 4), "max_rss_kb": usage.ru_maxrss}
    if timed_out:
        outcome.update(status="timeout", message=f"wall time limit of {timeout:g}s")
        return outcome
    if os.WIFSIGNALED(status):
        outcome["status"], outcome["message"] = _signal_status(os.WTERMSIG(status))
        return outcome
    raw, _ = _read_capped(paths["result"], 1 << 25)
    try:
        report = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        report = None
    if not isinstance(report, dict) or report.get("nonce") != nonce:
        code = os.WEXITSTATUS(status)
        outcome.update(status="error", message=f"exited with code {code} without a verdict from the harness")
        return outcome
    outcome.update({k: v for k, v in report.items() if k in ("status", "message", "units", "value")})
    if job["kind"] == "stdio":
        stdout, over = _read_capped(paths["stdout"], run["output_limit"])
        outcome["stdout"] = stdout.decode("utf-8", "replace")
        if over and outcome["status"] == "ok":
            outcome.update(status="output_limit", message=f"more than {run['output_limit']} bytes of output")
    return outcome


def _remove_tree(path):
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            try:
                os.unlink(os.path.join(root, name))
            except OSError:
                pass
        for name in dirs:
            try:
                os.rmdir(os.path.join(root, name))
            except OSError:
                pass


def run_job(job, config, seccomp, counter):
    """Compile once, then one forked run per test input (a single run for assert-style tests)."""
    try:
        compiled = {
            "prelude": compile(job["prelude"], "<prelude>", "exec") if job.get("prelude") else None,
            "program": None,
            "tests": None,
        }
    except SyntaxError as error:
        return {"error": f"prelude does not compile: {error}"}
    if job["kind"] == "asserts":
        try:
            compiled["tests"] = guard.compile_tests(job["tests"])
        except SyntaxError as error:
            return {"error": f"tests do not compile: {error}"}
    try:
        compiled["program"] = compile(job["program"], "<program>", "exec")
    except (SyntaxError, ValueError) as error:
        return {"runs": [], "status": "syntax_error", "message": child.describe(error)}
    workdir = os.path.join(config["workroot"], f"job{counter}")
    os.mkdir(workdir, 0o700)
    runs = []
    try:
        for index, run in enumerate(job["runs"]):
            outcome = _execute_run(job, run, compiled, workdir, index, config, seccomp)
            runs.append(outcome)
            if outcome["status"] == "timeout":
                break  # one timeout is enough: the remaining cases count as failed without costing more time
    finally:
        os.chdir(config["workroot"])
        _remove_tree(workdir)
        os.rmdir(workdir)
        if config["private_tmp"]:  # what a program left in /tmp must not reach the next program
            for scratch in isolation.SCRATCH_DIRS:
                _empty_directory(scratch, config["kept_in_scratch"])
    return {"runs": runs}


def _empty_directory(path, keep):
    """Delete everything in `path` but the paths in `keep`; the folders above a kept path are emptied, not deleted."""
    try:
        entries = os.listdir(path)
    except OSError:
        return
    for name in entries:
        entry = os.path.join(path, name)
        if entry in keep:
            continue
        if any(kept.startswith(entry + "/") for kept in keep):
            _empty_directory(entry, keep)
            continue
        if os.path.isdir(entry) and not os.path.islink(entry):
            _remove_tree(entry)
            try:
                os.rmdir(entry)
            except OSError:
                pass
        else:
            try:
                os.unlink(entry)
            except OSError:
                pass


def main():
    config = json.loads(sys.argv[-1])  # argv: -c, module names, their sources, config
    os.environ.pop("PWD", None)  # bubblewrap sets it; the environment is exactly the host's choice
    channel = Channel(os.dup(0), os.dup(1))
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    features = {"namespaces": [], "notes": [], "seccomp": False, "read_only_root": False, "private_tmp": False}
    try:
        if config["unshare"]:
            isolation.enter_namespaces(config, features)
        os.makedirs(config["workroot"], exist_ok=True)
        child.snapshot_environment()  # before dropping privileges: the interpreter's files may be root-only
        isolation.drop_privileges(config, features)
        os.chdir(config["workroot"])
        features["subreaper"] = isolation.protect_zygote()
        try:
            seccomp = isolation.SeccompFilter()
            features["seccomp"] = True
        except OSError as error:
            seccomp = None
            features["notes"].append(f"no seccomp filter ({error})")
        sys.setrecursionlimit(10_000)
        config["private_tmp"] = config["own_pid_namespace"] or features["private_tmp"]
        # The zygote's folder, and the Python folders mounted into /tmp (a virtualenv there, a root-only Python).
        kept = [config["workroot"], isolation.PYTHON_BINDS, *isolation.python_roots_under_scratch(config)]
        config["kept_in_scratch"] = frozenset(kept)
        if not isolation.process_limit_works(config["processes"]):
            features["notes"].append("RLIMIT_NPROC counts this user's other processes here; no process limit")
            config["processes"] = None
        features["process_limit"] = config["processes"]
    except Exception as error:
        channel.send({"error": f"sandbox set-up failed: {child.describe(error)}"})
        return
    channel.send({"ready": True, "features": features, "pid": os.getpid()})
    counter = 0
    while (job := channel.recv()) is not None:
        counter += 1
        try:
            reply = run_job(job, config, seccomp, counter)
        except Exception as error:  # a bug here must reach the host as a failed job, not a dead pipe
            reply = {"error": f"sandbox failure: {child.describe(error)}"}
        channel.send(reply)


if __name__ == "__main__":
    main()
