"""The code sandbox's zygote: a long-lived process inside the sandbox that runs each untrusted program in a fork.

Standard library only. The host (`ssp.rewards.sandbox`) starts `python -s -P -c BOOTSTRAP HARNESS RUNNER CONFIG`,
inside bubblewrap when available: the bootstrap loads `_sandbox_harness.py` (the child side) as a module and runs this
file as `__main__`. Set-up, once per zygote:
- (fallback mode only) new mount, network, IPC and UTS namespaces (plus a user namespace when not root), the whole
  file system remounted read-only and a size-limited tmpfs on /tmp, /var/tmp and /dev/shm;
- started as root: switch to an unprivileged uid of the host's choosing (rlimits do not bind root);
- not dumpable (a program cannot ptrace it or open its file descriptors), child subreaper (it adopts every orphan, so
  nothing a program starts can outlive its run);
- pre-import common modules, snapshot the builtins and those modules for the test code.

Per run (one fork per test case, see `_sandbox_harness.run_child`): a fresh session, stdin/stdout/stderr on files of
the job's own directory, every other file descriptor closed, rlimits, a seccomp filter, then prelude + program
(+ guarded test code). The zygote enforces the wall-clock limit, kills the run's whole process group, sweeps every
descendant, and reports what happened. Expected outputs never enter the sandbox: the host compares stdout and return
values.
"""

import ctypes
import errno
import json
import os
import resource
import select
import signal
import struct
import sys
import time

import _sandbox_harness as harness

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
# Isolation set-up (once per zygote)
# ==================================================================================================================

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP = 0x10000000, 0x20000000, 0x40000000, 0x02000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 0x4000, 1 << 18
PYTHON_BINDS = "/tmp/.ssp-python"
PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 4, 36, 38
SYS_MOUNT_SETATTR = {"x86_64": 442, "aarch64": 442}
AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = -100, 0x8000, 0x1

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result, what):
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount_tmpfs(path, size_bytes):
    if os.path.isdir(path) and not os.path.islink(path):
        _check(
            _libc.mount(
                b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, f"size={size_bytes},mode=1777".encode()
            ),
            f"mount tmpfs on {path}",
        )


def _enter_namespaces(config, features):
    """Fallback isolation without bubblewrap: best effort, every step reported in `features`."""
    as_root = os.geteuid() == 0
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | (0 if as_root else CLONE_NEWUSER)
    try:
        _check(_libc.unshare(flags), "unshare")
    except OSError as error:
        features["notes"].append(f"no namespaces ({error})")
        return
    if not as_root:
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    features["namespaces"] = ["mount", "net", "ipc", "uts"] + ([] if as_root else ["user"])
    try:
        _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
        attr = struct.pack("QQQQ", MOUNT_ATTR_RDONLY, 0, 0, 0)
        number = SYS_MOUNT_SETATTR.get(os.uname().machine)
        if number is None:
            raise OSError(errno.ENOSYS, "mount_setattr number unknown for this architecture")
        _check(_libc.syscall(number, AT_FDCWD, b"/", AT_RECURSIVE, attr, len(attr)), "remount / read-only")
        features["read_only_root"] = True
    except OSError as error:
        features["notes"].append(f"host file system stays writable ({error})")
    try:
        for path in ("/tmp", "/var/tmp", "/dev/shm"):
            _mount_tmpfs(path, config["tmp_bytes"])
        features["private_tmp"] = True
    except OSError as error:
        features["notes"].append(f"no private /tmp ({error})")
        return
    if as_root:
        try:
            _expose_python(config["python_roots"])
        except OSError as error:
            features["notes"].append(f"Python installation not reachable by the sandbox uid ({error})")


def _traversable(path):
    """Whether any user can reach and list `path` (every folder above it has the execute bit for others)."""
    current = os.path.realpath(path)
    if not os.stat(current).st_mode & 0o005 == 0o005:
        return False
    while current != "/":
        current = os.path.dirname(current)
        if not os.stat(current).st_mode & 0o001:
            return False
    return True


def _expose_python(roots):
    """A Python under a private folder (pyenv in /root) is bound, read-only, under /tmp for the unprivileged uid."""
    mapping = {}
    for index, root in enumerate(roots):
        if _traversable(root):
            continue
        target = os.path.join(PYTHON_BINDS, str(index))
        os.makedirs(target, mode=0o755)
        _check(_libc.mount(root.encode(), target.encode(), None, MS_BIND | MS_REC, None), f"bind {root}")
        _check(_libc.mount(None, target.encode(), None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC, None), "remount")
        mapping[root] = target
    if mapping:
        os.chmod(PYTHON_BINDS, 0o755)

    def remap(path):
        for root, target in mapping.items():
            if path == root or path.startswith(root + "/"):
                return target + path[len(root) :]
        return path

    sys.path[:] = [remap(p) for p in sys.path]
    for module in list(sys.modules.values()):  # packages already imported (encodings, ...) find submodules there
        if type(getattr(module, "__path__", None)) is list:
            module.__path__[:] = [remap(p) for p in module.__path__]
    sys.path_importer_cache.clear()


def _drop_privileges(config, features):
    """Root is not bound by RLIMIT_NPROC and can read everything: run as the host's unprivileged uid instead."""
    if os.geteuid() != 0:
        return
    uid = config["uid"]
    os.makedirs(config["workroot"], exist_ok=True)
    os.chown(config["workroot"], uid, uid)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    features["uid"] = uid


# ==================================================================================================================
# seccomp (libseccomp through ctypes; absent library -> no filter, reported)
# ==================================================================================================================


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_NE, SCMP_CMP_MASKED_EQ = 1, 7

# Denied outright: debugging other processes, changing mounts or namespaces, kernel attack surface, and signals that
# could reach beyond the run (kill is allowed only for its own process group, below).
_DENIED_SYSCALLS = (
    "ptrace process_vm_readv process_vm_writev pidfd_getfd pidfd_send_signal kcmp mount umount2 pivot_root chroot "
    "unshare setns move_mount open_tree fsopen fsmount fspick mount_setattr keyctl add_key request_key bpf "
    "perf_event_open userfaultfd io_uring_setup io_uring_enter io_uring_register tkill tgkill rt_sigqueueinfo "
    "rt_tgsigqueueinfo open_by_handle_at name_to_handle_at fanotify_init reboot kexec_load kexec_file_load "
    "init_module finit_module delete_module swapon swapoff acct quotactl syslog socket"
).split()


def _errno_action(number):
    return 0x00050000 | (number & 0xFFFF)


class SeccompFilter:
    """Built once in the zygote; `load()` in each run's child before any untrusted code."""

    def __init__(self):
        lib = ctypes.CDLL("libseccomp.so.2")
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_rule_add_array.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.POINTER(_ArgCmp),
        ]
        lib.seccomp_load.argtypes = [ctypes.c_void_p]
        self._lib = lib
        self._ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
        if not self._ctx:
            raise OSError("seccomp_init failed")
        for name in _DENIED_SYSCALLS:
            self._rule(name, _errno_action(errno.EPERM))
        self._rule("clone3", _errno_action(errno.ENOSYS))  # its flags are out of reach; libc falls back to clone
        self._rule("kill", _errno_action(errno.EPERM), (0, SCMP_CMP_NE, 0, 0))
        for flag in (
            CLONE_NEWNS,
            CLONE_NEWUTS,
            CLONE_NEWIPC,
            CLONE_NEWUSER,
            CLONE_NEWPID,
            CLONE_NEWNET,
            CLONE_NEWCGROUP,
        ):
            self._rule("clone", _errno_action(errno.EPERM), (0, SCMP_CMP_MASKED_EQ, flag, flag))

    def _rule(self, name, action, *comparisons):
        number = self._lib.seccomp_syscall_resolve_name(name.encode())
        if number < 0:
            return  # not a syscall on this architecture
        array = (_ArgCmp * max(1, len(comparisons)))(*[_ArgCmp(*c) for c in comparisons])
        result = self._lib.seccomp_rule_add_array(self._ctx, action, number, len(comparisons), array)
        if result != 0:
            raise OSError(-result, f"seccomp rule for {name}: {os.strerror(-result)}")

    def load(self):
        result = self._lib.seccomp_load(self._ctx)
        if result != 0:
            raise OSError(-result, f"seccomp_load: {os.strerror(-result)}")


def _process_limit_works(processes):
    """Whether a run under RLIMIT_NPROC can still fork: on kernels before 5.14, or without a user namespace of its
    own, the limit counts every process of the user, and a busy user could not fork at all."""
    if not processes:
        return False
    pid = os.fork()
    if pid == 0:
        try:
            resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
            grandchild = os.fork()
            if grandchild == 0:
                os._exit(0)
            os.waitpid(grandchild, 0)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


# ==================================================================================================================
# The zygote
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
            harness.run_child(job, run, compiled, nonce, fds, seccomp, config["processes"])
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
            compiled["tests"] = harness.compile_tests(job["tests"])
        except SyntaxError as error:
            return {"error": f"tests do not compile: {error}"}
    try:
        compiled["program"] = compile(job["program"], "<program>", "exec")
    except (SyntaxError, ValueError) as error:
        return {"runs": [], "status": "syntax_error", "message": harness.describe(error)}
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
            for scratch in ("/tmp", "/var/tmp", "/dev/shm"):
                _empty_directory(scratch, keep=config["workroot"])
    return {"runs": runs}


def _empty_directory(path, keep):
    try:
        entries = os.listdir(path)
    except OSError:
        return
    for name in entries:
        entry = os.path.join(path, name)
        if entry in (keep, PYTHON_BINDS) or keep.startswith(entry + "/"):
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
    config = json.loads(sys.argv[3])  # argv: -c, harness source, runner source, config
    os.environ.pop("PWD", None)  # bubblewrap sets it; the environment is exactly the host's choice
    channel = Channel(os.dup(0), os.dup(1))
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    features = {"namespaces": [], "notes": [], "seccomp": False, "read_only_root": False, "private_tmp": False}
    try:
        if config["unshare"]:
            _enter_namespaces(config, features)
        os.makedirs(config["workroot"], exist_ok=True)
        harness.snapshot_environment()  # before dropping privileges: the interpreter's files may be root-only
        _drop_privileges(config, features)
        os.chdir(config["workroot"])
        _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        features["subreaper"] = _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        try:
            seccomp = SeccompFilter()
            features["seccomp"] = True
        except OSError as error:
            seccomp = None
            features["notes"].append(f"no seccomp filter ({error})")
        sys.setrecursionlimit(10_000)
        config["private_tmp"] = config["own_pid_namespace"] or features["private_tmp"]
        if not _process_limit_works(config["processes"]):
            features["notes"].append("RLIMIT_NPROC counts this user's other processes here; no process limit")
            config["processes"] = None
        features["process_limit"] = config["processes"]
    except Exception as error:
        channel.send({"error": f"sandbox set-up failed: {harness.describe(error)}"})
        return
    channel.send({"ready": True, "features": features, "pid": os.getpid()})
    counter = 0
    while (job := channel.recv()) is not None:
        counter += 1
        try:
            reply = run_job(job, config, seccomp, counter)
        except Exception as error:  # a bug here must reach the host as a failed job, not a dead pipe
            reply = {"error": f"sandbox failure: {harness.describe(error)}"}
        channel.send(reply)


if __name__ == "__main__":
    main()
