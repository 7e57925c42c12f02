"""Inside the sandbox: honest values and the rewriting of test code (assert-style tests) before it runs.

Standard library only; the zygote loads it as the module `_sandbox_guard` inside the sandbox (never imported by the
host), and each run removes it from `sys.modules` before the program runs. Every comparison, operator, truth test,
attribute or item access, iteration and call that test code makes checks that the values involved cannot fake their
behaviour: an object whose class overrides `__eq__`, `__bool__`, `__sub__`, ... raises `_Rejected`. The guards look
names up in a private copy of the builtins, so a program that patches `builtins` cannot change what they do.
"""

import ast
import builtins
import sys
import types

__builtins__ = dict(vars(builtins))
_FunctionType, _MethodType = types.FunctionType, types.MethodType
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


def snapshot_trusted_classes():
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
