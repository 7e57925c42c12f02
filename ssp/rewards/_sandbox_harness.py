"""The child side of the code sandbox: what runs in each forked run, around and after the untrusted program.

Standard library only; the zygote (`_sandbox_runner.py`) loads it as the module `_sandbox_harness` inside the
sandbox, and `run_child` removes it from `sys.modules` before the program runs. Everything here that runs after a
program's code uses references taken at import, before any program ran: its functions look names up in a private copy
of the builtins, and the calls that report a verdict are bound at import, so a program that patches `builtins`, `os`
or `json` cannot change what the checks do or what the report says.

Test code (assert-style tests) is rewritten before it runs: every comparison, operator, truth test, attribute or
item access, iteration and call it makes checks that the values involved cannot fake their behaviour (an object
whose class overrides `__eq__`, `__bool__`, `__sub__`, ... raises `_Rejected`), builtins and common modules are
pristine copies the program cannot patch, and a pass must carry the nonce the zygote gave the run.
"""

import ast
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

__builtins__ = dict(vars(builtins))
_write, _lseek, _ftruncate, _exit, _getpid = os.write, os.lseek, os.ftruncate, os._exit, os.getpid
_quote = encode_basestring_ascii
_FunctionType, _MethodType, _ModuleType = types.FunctionType, types.MethodType, types.ModuleType
_SimpleNamespace = types.SimpleNamespace

# Modules the zygote imports up front: shared with every run, and snapshotted so test code sees them unpatched.
PRE_IMPORTS = (
    "array bisect cmath collections collections.abc copy dataclasses datetime decimal enum fractions functools "
    "heapq itertools json math operator random re statistics string typing"
).split()

PROGRAM_MODULE = "solution"
_HEAPTYPE = 1 << 9

# Dunders a class may define and still count as honest: none of them changes how comparisons, arithmetic, truth,
# iteration, indexing or attribute access behave.
_HONEST_DUNDERS = frozenset(
    "__module__ __qualname__ __doc__ __dict__ __weakref__ __slots__ __annotations__ __init__ __new__ __repr__ "
    "__str__ __match_args__ __getnewargs__ __dataclass_fields__ __dataclass_params__ __orig_bases__ __parameters__ "
    "__firstlineno__ __static_attributes__ __classcell__ __init_subclass__ __class_getitem__ __set_name__ "
    "__post_init__ __copy__ __deepcopy__ __getstate__ __setstate__ __reduce__ __reduce_ex__ __del__ "
    "__abstractmethods__ __type_params__".split()
)
_SCALARS = frozenset({int, float, complex, str, bytes, bool, type(None)})
_STDLIB_ROOTS = frozenset(sys.stdlib_module_names)


# ==================================================================================================================
# Honest values: what test code may compare, compute with and call
# ==================================================================================================================


class _Rejected(BaseException):
    """A value in test code whose class overrides behaviour a test relies on. BaseException: `except Exception`
    in test code cannot swallow it."""


_static_types = set()
_state = {"rejected": None}
_type_dict = type.__dict__["__dict__"].__get__
_type_mro = type.__dict__["__mro__"].__get__
_type_flags = type.__dict__["__flags__"].__get__  # read through `type` itself: a metaclass could fake them
_trusted_classes = {}  # Python classes of the pre-imported standard library (Counter, Enum, ...) and their dicts


def _snapshot_trusted_classes():
    """Standard-library classes may define any dunder (Counter.__eq__ is honest) as long as nobody changes them."""
    for name in PRE_IMPORTS:
        for value in list(vars(sys.modules[name]).values()):
            if isinstance(value, type) and _type_flags(value) & _HEAPTYPE and value.__module__ in sys.modules:
                if value.__module__.partition(".")[0] in _STDLIB_ROOTS:
                    _trusted_classes[value] = dict(_type_dict(value))


def _class_is_honest(cls):
    if cls in _static_types:
        return True
    for klass in _type_mro(cls):
        if not (_type_flags(klass) & _HEAPTYPE):
            continue
        namespace = _type_dict(klass)
        snapshot = _trusted_classes.get(klass)
        if snapshot is not None:
            if len(namespace) != len(snapshot) or any(
                namespace.get(k, snapshot) is not v for k, v in snapshot.items()
            ):
                return False
            continue
        for name in namespace:
            if name[:2] == "__" and name[-2:] == "__" and name not in _HONEST_DUNDERS:
                _state["last_dunder"] = f"{klass.__qualname__}.{name}"
                return False
    if not (_type_flags(cls) & _HEAPTYPE):
        _static_types.add(cls)  # a C type cannot change later; a class can, so classes are checked every time
    return True


def _shallow_honest(value):
    cls = type(value)
    return cls in _SCALARS or _class_is_honest(cls)


def _children(value, cls):
    """Elements a container's comparison would touch, read through the C base type's own methods."""
    for base in _type_mro(cls):
        if _type_flags(base) & _HEAPTYPE:
            continue
        if base is dict:
            return list(dict.keys(value)) + list(dict.values(value))
        if base in (list, tuple, set, frozenset):
            return list(base.__iter__(value))
        if base is _SimpleNamespace:
            return list(object.__getattribute__(value, "__dict__").values())
        if base.__name__ == "deque" and base.__module__ == "collections":
            return list(base.__iter__(value))
        if base.__name__ == "ndarray" and base.__module__ == "numpy" and value.dtype.hasobject:
            return value.ravel().tolist()
    return ()


def _deep_honest(root):
    stack, seen = [root], set()
    while stack:
        value = stack.pop()
        cls = type(value)
        if cls in _SCALARS:
            continue
        if not _class_is_honest(cls):
            return value
        if id(value) in seen:
            continue
        seen.add(id(value))
        stack.extend(_children(value, cls))
    return None


def _reject(value):
    detail = _state.get("last_dunder") or type(value).__qualname__
    _state["rejected"] = f"a value of type {type(value).__qualname__} overrides {detail}"
    raise _Rejected(_state["rejected"])


def _ssp_t(value):
    if not _shallow_honest(value):
        _reject(value)
    return value


def _ssp_deep(value):
    bad = _deep_honest(value)
    if bad is not None:
        _reject(bad)
    return value


def _compare_functions():
    import operator

    return {
        "==": operator.eq,
        "!=": operator.ne,
        "<": operator.lt,
        "<=": operator.le,
        ">": operator.gt,
        ">=": operator.ge,
        "in": lambda a, b: a in b,
        "not in": lambda a, b: a not in b,
        "is": operator.is_,
        "is not": operator.is_not,
    }


def _binop_functions():
    import operator

    return {
        "+": operator.add,
        "-": operator.sub,
        "*": operator.mul,
        "/": operator.truediv,
        "//": operator.floordiv,
        "%": operator.mod,
        "**": operator.pow,
        "<<": operator.lshift,
        ">>": operator.rshift,
        "|": operator.or_,
        "^": operator.xor,
        "&": operator.and_,
        "@": operator.matmul,
    }


_COMPARE = _compare_functions()
_BINOP = _binop_functions()
_UNARY = {"-": lambda a: -a, "+": lambda a: +a, "~": lambda a: ~a}
_truth = bool


def _ssp_compare(values, ops):
    for value in values:
        _ssp_deep(value)
    result = True
    for index, op in enumerate(ops):
        result = _COMPARE[op](values[index], values[index + 1])
        if index + 1 < len(ops) and not _truth(_ssp_t(result)):
            return result
    return result


def _ssp_binop(left, op, right):
    return _BINOP[op](_ssp_t(left), _ssp_t(right))


def _ssp_unary(op, operand):
    return _UNARY[op](_ssp_t(operand))


def _untrusted_callable(func):
    cls = type(func)
    if cls is _FunctionType:
        return func.__code__.co_filename == "<program>"
    if cls is _MethodType:
        return _untrusted_callable(func.__func__)
    namespace = (
        _type_dict(func) if isinstance(func, type) else (_type_dict(cls) if _type_flags(cls) & _HEAPTYPE else {})
    )
    return namespace.get("__module__") == PROGRAM_MODULE


def _ssp_call(func, *args, **kwargs):
    if not _untrusted_callable(func):  # arguments of the program's own functions come from the tests
        for value in args:
            _ssp_deep(value)
        for value in kwargs.values():
            _ssp_deep(value)
    return func(*args, **kwargs)


_GUARDS = {
    "_ssp_t": _ssp_t,
    "_ssp_compare": _ssp_compare,
    "_ssp_binop": _ssp_binop,
    "_ssp_unary": _ssp_unary,
    "_ssp_call": _ssp_call,
}
_AST_OPS = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.BitAnd: "&",
    ast.MatMult: "@",
    ast.USub: "-",
    ast.UAdd: "+",
    ast.Invert: "~",
}


def _guard_call(name, *args):
    return ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=list(args), keywords=[])


class TestGuard(ast.NodeTransformer):
    """Rewrites test code so that every operation on a value first checks that the value is honest."""

    def visit_Compare(self, node):
        self.generic_visit(node)
        if all(isinstance(op, (ast.Is, ast.IsNot)) for op in node.ops):
            return node
        values = ast.Tuple(elts=[node.left, *node.comparators], ctx=ast.Load())
        ops = ast.Tuple(elts=[ast.Constant(_AST_OPS[type(op)]) for op in node.ops], ctx=ast.Load())
        return ast.copy_location(_guard_call("_ssp_compare", values, ops), node)

    def visit_BinOp(self, node):
        self.generic_visit(node)
        call = _guard_call("_ssp_binop", node.left, ast.Constant(_AST_OPS[type(node.op)]), node.right)
        return ast.copy_location(call, node)

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.Not):
            node.operand = _guard_call("_ssp_t", node.operand)
            return node
        return ast.copy_location(_guard_call("_ssp_unary", ast.Constant(_AST_OPS[type(node.op)]), node.operand), node)

    def visit_BoolOp(self, node):
        self.generic_visit(node)
        node.values = [_guard_call("_ssp_t", value) for value in node.values]
        return node

    def _guard_test(self, node):
        self.generic_visit(node)
        node.test = _guard_call("_ssp_t", node.test)
        return node

    visit_Assert = visit_If = visit_While = visit_IfExp = _guard_test

    def visit_For(self, node):
        self.generic_visit(node)
        node.iter = _guard_call("_ssp_t", node.iter)
        return node

    def visit_comprehension(self, node):
        self.generic_visit(node)
        node.iter = _guard_call("_ssp_t", node.iter)
        node.ifs = [_guard_call("_ssp_t", test) for test in node.ifs]
        return node

    def visit_Subscript(self, node):
        self.generic_visit(node)
        if isinstance(node.ctx, ast.Load):
            node.value = _guard_call("_ssp_t", node.value)
        return node

    def visit_Attribute(self, node):
        self.generic_visit(node)
        if isinstance(node.ctx, ast.Load):
            node.value = _guard_call("_ssp_t", node.value)
        return node

    def visit_FormattedValue(self, node):
        self.generic_visit(node)
        node.value = _guard_call("_ssp_t", node.value)
        return node

    def visit_AugAssign(self, node):
        self.generic_visit(node)
        if not isinstance(node.target, ast.Name):
            return node
        current = ast.Name(id=node.target.id, ctx=ast.Load())
        value = _guard_call("_ssp_binop", current, ast.Constant(_AST_OPS[type(node.op)]), node.value)
        return ast.copy_location(ast.Assign(targets=[node.target], value=value), node)

    # Annotations are left alone: `List[int]` would otherwise go through the guards and typing's classes.
    def visit_arg(self, node):
        return node

    def visit_FunctionDef(self, node):
        returns, node.returns = node.returns, None
        self.generic_visit(node)
        node.returns = returns
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_AnnAssign(self, node):
        annotation = node.annotation
        self.generic_visit(node)
        node.annotation = annotation
        return node

    def visit_Call(self, node):
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id == "super":
            return node  # zero-argument super() must be called directly from its method
        call = ast.Call(
            func=ast.Name(id="_ssp_call", ctx=ast.Load()), args=[node.func, *node.args], keywords=node.keywords
        )
        return ast.copy_location(call, node)


def compile_tests(source):
    """Guarded code objects of the test code's top-level statements, each flagged whether it is a test unit."""
    tree = ast.parse(source, "<tests>")
    statements = []
    for statement in tree.body:
        is_unit = isinstance(statement, ast.Assert) or (
            isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)
        )
        guarded = TestGuard().visit(ast.Module(body=[statement], type_ignores=[]))
        ast.fix_missing_locations(guarded)
        statements.append((compile(guarded, "<tests>", "exec"), is_unit))
    return statements


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
    _snapshot_trusted_classes()


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
    sys.modules.pop("_sandbox_harness", None)  # `import _sandbox_harness` must not hand the program the guards
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
