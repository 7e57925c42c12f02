"""The two isolation backends on the host side: bubblewrap's command line, the Python folders both expose, and the
one line that says what isolation this machine gave.

- `bwrap` (bubblewrap, `apt-get install bubblewrap`): new user (when not root), pid, network, IPC, UTS and cgroup
  namespaces; a file system made of read-only binds of /usr and the Python installation plus private tmpfs /tmp and
  /dev/shm, so nothing else of the host is visible; the sandbox dies with its parent.
- `process` (fallback, no extra package): the zygote unshares mount, network, IPC and UTS namespaces itself (and a
  user namespace when not root), remounts the host file system read-only, mounts a private tmpfs on /tmp and binds
  Python's folders that live under /tmp back on top of it (`_sandbox_isolation.py`); host files stay readable with
  the sandbox user's permissions. Each step that the machine refuses is reported.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

BACKENDS = ("bwrap", "process")
LIMITS_DOC = "docs/sandbox.md"


def python_roots() -> list[str]:
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


def bwrap_argv(bwrap: str, tmp_size_mb: int, as_root: bool) -> list[str]:
    tmp_bytes = str(tmp_size_mb << 20)
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
    roots = python_roots()
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


def isolation_line(backend: str, features: dict, why_not_bwrap: str | None = None) -> str:
    """One line, printed at the sandbox's start-up, of what isolation this machine gave (from the zygote's report);
    `why_not_bwrap` says why the fallback runs (bubblewrap missing or failing, or `SSP_SANDBOX=process`)."""
    parts = [f"namespaces: {', '.join(features.get('namespaces') or []) or 'none'}"]
    parts.append("seccomp" if features.get("seccomp") else "NO seccomp")
    if backend == "bwrap":
        parts.append("host files hidden")
    elif features.get("read_only_root"):
        parts.append("host files readable, read-only")
    else:
        parts.append("host files WRITABLE")
    parts.append("private /tmp" if features.get("private_tmp") or backend == "bwrap" else "NO private /tmp")
    limit = features.get("process_limit")
    parts.append(f"rlimits ({limit} processes)" if limit else "rlimits (no process limit)")
    if features.get("uid") is not None:
        parts.append(f"uid {features['uid']}")
    parts += features.get("notes") or []
    if backend == "bwrap":
        line = f"sandbox: bwrap ({'; '.join(parts)})"
    else:
        reason = (why_not_bwrap or "bubblewrap not used")[:200]
        line = f"sandbox: process fallback ({reason}; {'; '.join(parts)}) - see {LIMITS_DOC}"
    return " ".join(line.split())  # one line, whatever a reason or note contains
