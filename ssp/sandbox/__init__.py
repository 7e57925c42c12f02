"""The code sandbox: runs untrusted, model-written Python against its tests and says whether it passed.

Threat model
------------
The programs are written by the policy being trained (or evaluated). They are not a determined human attacker, but
RL searches for whatever earns reward, and buggy code does harm by accident, so every program is treated as hostile.
What is protected, from what:
- the verdict: a program must not pass without solving the task. Expected outputs never enter the sandbox (the
  host compares stdout and return values); assert-style tests run rewritten so that values faking `__eq__` and
  friends are rejected, against pristine builtins and modules, and a pass carries a per-run nonce the program never
  sees (exiting 0 early, `os._exit`, patched `builtins`/`math`/`json`, forged reports all fail);
- the host: its files (not visible with bubblewrap; read-only with the fallback), its processes and the trainer
  (own pid namespace or another uid, seccomp on `kill`/`ptrace`/..., the zygote is not dumpable), its network (a
  network namespace and seccomp on `socket`), its environment (programs get a fixed, clean one);
- the machine's resources: per-run rlimits (memory, CPU, file size, open files, processes), a wall-clock limit that
  kills the run's whole process group, a sweep of every process a run leaves behind, a size-limited private /tmp
  emptied after each program, capped output;
- the next program: each run is a fresh fork of a zygote that no program touched, in a folder of its own.
Not protected (docs/sandbox.md lists it precisely): kernel exploits (namespaces and seccomp narrow the attack
surface, they do not remove it); with the `process` fallback, reading host files the sandbox uid may read (for a
non-root user: all of that user's files); a program written against this harness specifically could forge an
assert-style pass (stdin and functional tests are immune); CPU and memory bandwidth shared with other runs.

Backends: `bwrap` (bubblewrap) when installed and working, else the `process` fallback (`SSP_SANDBOX` forces one);
the sandbox's start-up prints one line saying which, and what isolation this machine gave it.

Layout: `host` (the backend choice, the zygote pool, `get_sandbox`), `backends` (bubblewrap's command line, the
isolation line), `pool` (worker processes with hard deadlines; the math reward uses it too). What runs inside the
sandbox is standard library only and travels as source on the zygote's command line: `_sandbox_zygote` (the
zygote's loop), `_sandbox_isolation` (its set-up: namespaces, mounts, uid, seccomp), `_sandbox_child` (one forked
run) and `_sandbox_guard` (honest values and the rewriting of test code). The sandbox imports nothing else of ssp.
"""

from ssp.sandbox.host import (
    Sandbox,
    SandboxLimits,
    get_sandbox,
    job_limits,
    sandbox_env,
    shutdown_sandbox,
    start_sandbox,
)

__all__ = [
    "Sandbox",
    "SandboxLimits",
    "get_sandbox",
    "job_limits",
    "sandbox_env",
    "shutdown_sandbox",
    "start_sandbox",
]
