"""Inside the sandbox: one run in a forked child of the zygote, around and after the untrusted program.

Standard library only; the zygote loads it as the module `_sandbox_child` inside the sandbox (never imported by the
host), and `run_child` removes every `_sandbox_*` module from `sys.modules` before the program runs. Everything here
that runs after a program's code uses references taken at import, before any program ran: its functions look names
up in a private copy of the builtins, and the calls that report a verdict are bound at import, so a program that
patches `builtins`, `os` or `json` cannot change what the checks do or what the report says.

Test code (assert-style tests) runs rewritten by `_sandbox_guard`, with pristine copies of the builtins and of the
common modules that the program cannot patch, and a pass must carry the nonce the zygote gave the run.
"""

import builtins
import errno
import io
import json
import os
import resource
import signal
import sys
import threading
import types
from json.encoder import encode_basestring_ascii

from _sandbox_guard import _GUARDS, PRE_IMPORTS, PROGRAM_MODULE, _Rejected, _state, snapshot_trusted_classes

__builtins__ = dict(vars(builtins))
_write, _lseek, _ftruncate, _exit, _getpid = os.write, os.lseek, os.ftruncate, os._exit, os.getpid
_quote = encode_basestring_ascii
_ModuleType = types.ModuleType
ZYGOTE_MODULE_PREFIX = "_sandbox_"


# ==================================================================================================================
# Pristine builtins and modules for the test code
# ==================================================================================================================

_pristine_modules = {}
_pristine_builtins = {}
_real_import = builtins.__import__


def snapshot_environment():
    for name in PRE_IMPORTS:
        __import__(name)
        _pristine_modules[name] = dict(vars(sys.modules[name]))
    _pristine_builtins.update(vars(builtins))
    snapshot_trusted_classes()


def _test_namespace(program_globals):
    copies = {}

    def pristine(name):
        if name not in copies:
            module = _ModuleType(name)
            module.__dict__.update(_pristine_modules[name])
            copies[name] = module
        return copies[name]

    def test_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0:
            if name in _pristine_modules and (fromlist or "." not in name):
                return pristine(name)
            top = name.partition(".")[0]
            if not fromlist and top in _pristine_modules:
                return pristine(top)
        return _real_import(name, globals, locals, fromlist, level)

    test_builtins = dict(_pristine_builtins)
    test_builtins["__import__"] = test_import
    namespace = {}
    for key, value in program_globals.items():
        if type(value) is _ModuleType and value.__name__ in _pristine_modules:
            value = pristine(value.__name__)
        namespace[key] = value
    namespace.update(_GUARDS)
    namespace["__name__"] = "__ssp_tests__"
    namespace["__builtins__"] = test_builtins
    return namespace


# ==================================================================================================================
# One run, in a forked child
# ==================================================================================================================


def describe(error):
    return f"{type(error).__name__}: {error}"[:300]


def _exception_status(error):
    if isinstance(error, MemoryError):
        return "memory"
    if isinstance(error, _Rejected):
        return "rejected"
    if isinstance(error, OSError) and error.errno == errno.EFBIG:
        return "output_limit"
    return "error"


def _join_threads():
    main = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main and not thread.daemon:
            thread.join()


def run_child(job, run, compiled, nonce, fds, seccomp, processes):
    """Never returns. fds: stdin, stdout, stderr and result file descriptors to install as 0, 1, 2 and 3."""
    for name in [name for name in sys.modules if name.startswith(ZYGOTE_MODULE_PREFIX)]:
        sys.modules.pop(name)  # `import _sandbox_guard` must not hand the program the guards
    os.setsid()
    high = [os.dup(fd) for fd in fds]  # dup first so that installing one cannot close another
    for target, fd in enumerate(high):
        os.dup2(fd, target)
    os.closerange(4, 1 << 16)
    limits = job["limits"]
    memory = limits["memory_bytes"]
    cpu = max(1, int(limits["timeout"] + 0.999))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"], limits["file_bytes"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"], limits["open_files"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if processes:
        resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if seccomp is not None:
        seccomp.load()
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8")
    streams = [
        io.TextIOWrapper(io.BufferedWriter(io.FileIO(fd, "w", closefd=False)), encoding="utf-8") for fd in (1, 2)
    ]
    sys.stdout = sys.__stdout__ = streams[0]
    sys.stderr = sys.__stderr__ = streams[1]
    run_pid = _getpid()
    report = _run_harness(job, run, compiled)
    for stream in streams:  # what the program printed, even if it replaced sys.stdout since
        try:
            stream.flush()
        except BaseException as error:
            if report.get("status") == "ok":
                report = {"status": _exception_status(error), "message": describe(error)}
    if _getpid() != run_pid:
        _exit(0)  # a process the program forked fell through to here: only the run itself reports
    report["nonce"] = nonce
    data = _encode_report(report).encode()
    _lseek(3, 0, 0)
    _ftruncate(3, 0)
    while data:
        data = data[_write(3, data) :]
    _exit(0)


def _encode_report(report):
    """JSON of a report (str values, or lists of str), without the `json` module a program may have patched."""
    items = []
    for key, value in report.items():
        encoded = "[" + ",".join(_quote(str(v)) for v in value) + "]" if type(value) is list else _quote(str(value))
        items.append(_quote(key) + ":" + encoded)
    return "{" + ",".join(items) + "}"


def _run_harness(job, run, compiled):
    kind = job["kind"]
    # The program runs as a real module that also replaces `__main__`, so `import __main__` cannot reach the harness.
    module = _ModuleType("__main__" if kind == "stdio" else PROGRAM_MODULE)
    sys.modules["__main__"] = sys.modules[module.__name__] = module
    namespace = module.__dict__
    namespace["__builtins__"] = builtins
    try:
        if compiled["prelude"] is not None:
            exec(compiled["prelude"], namespace)
        exec(compiled["program"], namespace)
        if kind == "functional":
            return _call_function(namespace, job["fn_name"], run["input"])
        if kind == "asserts":
            return _run_units(namespace, compiled["tests"])
        _join_threads()
        return {"status": "ok"}
    except SystemExit as error:
        if kind == "stdio" and error.code in (None, 0):
            _join_threads()
            return {"status": "ok"}
        return {"status": "error", "message": f"exited with {error.code!r}"}
    except BaseException as error:
        return {"status": _exception_status(error), "message": describe(error)}
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass


def _call_function(namespace, fn_name, raw_input):
    args = [json.loads(line) for line in raw_input.split("\n") if line.strip()]
    solution = namespace.get("Solution")
    if isinstance(solution, type) and hasattr(solution, fn_name):
        function = getattr(solution(), fn_name)
    elif callable(namespace.get(fn_name)):
        function = namespace[fn_name]
    else:
        return {"status": "error", "message": f"no function {fn_name!r} (nor Solution.{fn_name})"}
    value = function(*args)
    return {"status": "ok", "value": json.dumps(value)[: 1 << 24]}


def _run_units(program_namespace, statements):
    namespace = _test_namespace(program_namespace)
    units, first_failure = [], ""
    for code, is_unit in statements:
        try:
            exec(code, namespace)
            outcome = "ok"
        except BaseException as error:
            outcome = "wrong" if type(error) is AssertionError else _exception_status(error)
            first_failure = first_failure or f"test {len(units) + 1}: {describe(error)}"
            if not is_unit:  # set-up code failed: every unit after it fails too
                remaining = sum(unit for _, unit in statements) - len(units)
                return {"status": outcome, "message": first_failure, "units": units + [outcome] * remaining}
        if _state["rejected"] is not None:
            outcome = "rejected"
        if is_unit:
            units.append(outcome)
    return {"status": "ok", "units": units, "message": _state["rejected"] or first_failure}
