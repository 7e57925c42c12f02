"""Inside the sandbox: the zygote's isolation set-up, once per zygote, before any program runs.

Standard library only; the zygote loads it as the module `_sandbox_isolation` inside the sandbox (never imported by
the host). Under bubblewrap only the seccomp filter, the uid switch and the process-limit probe are used; the
`process` backend (no bubblewrap) also makes its own namespaces here: mount, network, IPC and UTS (and a user
namespace when not root), the host file system remounted read-only, a size-limited tmpfs on /tmp, /var/tmp and
/dev/shm, and the Python folders that tmpfs would cover (a virtualenv under /tmp) bound back on top of it.
Every step the machine refuses is reported in `features`, never skipped silently.
"""

import ctypes
import errno
import os
import resource
import struct
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP = 0x10000000, 0x20000000, 0x40000000, 0x02000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 0x4000, 1 << 18
PYTHON_BINDS = "/tmp/.ssp-python"
SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 4, 36
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


def enter_namespaces(config, features):
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
        try:
            for name, line in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(line)
        except OSError as error:  # a kernel or LSM that allows the namespace but not the mapping: uid shows as nobody
            features["notes"].append(f"no uid map in the user namespace ({error})")
    features["namespaces"] = ["mount", "net", "ipc", "uts"] + ([] if as_root else ["user"])
    try:
        _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
        _make_read_only("/")
        features["read_only_root"] = True
    except OSError as error:
        features["notes"].append(f"host file system stays writable ({error})")
    # A Python under /tmp (a clone's virtualenv) would vanish under the private tmpfs: hold it open first, then bind
    # it back at its own path on top of the tmpfs, as bubblewrap's argument order does.
    held = {root: os.open(root, os.O_PATH | os.O_DIRECTORY) for root in python_roots_under_scratch(config)}
    try:
        for path in SCRATCH_DIRS:
            _mount_tmpfs(path, config["tmp_bytes"])
        features["private_tmp"] = True
    except OSError as error:
        features["notes"].append(f"no private /tmp ({error})")
    for root, fd in held.items():
        try:
            _bind_back(fd, root)
        except OSError as error:
            features["notes"].append(f"Python folder {root} hidden by the private /tmp ({error})")
        finally:
            os.close(fd)
    if not features["private_tmp"]:
        return
    if as_root:
        try:
            _expose_python(config["python_roots"])
        except OSError as error:
            features["notes"].append(f"Python installation not reachable by the sandbox uid ({error})")


def python_roots_under_scratch(config):
    """The Python folders inside /tmp, /var/tmp or /dev/shm: the private tmpfs covers them, so they are bound back."""
    return [
        root
        for root in config["python_roots"]
        if any(root.startswith(scratch + "/") for scratch in SCRATCH_DIRS) and os.path.isdir(root)
    ]


def _make_read_only(path):
    attr = struct.pack("QQQQ", MOUNT_ATTR_RDONLY, 0, 0, 0)
    number = SYS_MOUNT_SETATTR.get(os.uname().machine)
    if number is None:
        raise OSError(errno.ENOSYS, "mount_setattr number unknown for this architecture")
    _check(_libc.syscall(number, AT_FDCWD, path.encode(), AT_RECURSIVE, attr, len(attr)), f"remount {path} read-only")


def _bind_back(fd, root):
    """Bind the folder held open as `fd` at `root` again, read-only, if a private tmpfs now covers it."""
    held = os.fstat(fd)
    if os.path.isdir(root) and os.path.samestat(os.stat(root), held):
        return  # no tmpfs was mounted above it
    current = "/"
    for part in root.strip("/").split("/"):  # the folders above it are new in the tmpfs: make them traversable
        current = os.path.join(current, part)
        if not os.path.isdir(current):
            os.mkdir(current)
            os.chmod(current, 0o755)
    _check(_libc.mount(f"/proc/self/fd/{fd}".encode(), root.encode(), None, MS_BIND | MS_REC, None), f"bind {root}")
    _make_read_only(root)


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


def drop_privileges(config, features):
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


def process_limit_works(processes):
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


def protect_zygote():
    """Not dumpable (a program cannot ptrace the zygote or open its file descriptors through /proc), and a child
    subreaper (every orphan a program leaves becomes its child, to be swept). Returns whether the subreaper took."""
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    return _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
