"""Remote functions: ``@session.function()`` runs a plain Python function in
a fresh sandbox of the session, as CoreWeave's client does.

The function travels as its source text (decorators dropped), not pickled
code, so it runs on whatever Python the image has. Arguments, the result and
the module-level values it reads must be JSON values (numbers, strings,
lists, dicts, booleans, None); modules it uses are imported again inside the
sandbox by name. Other globals (functions, classes, objects) are not sent:
define or import them inside the function.
"""

from __future__ import annotations

import ast
import functools
import inspect
import json
import textwrap
import types
import uuid
from typing import TYPE_CHECKING, Any, Callable, Dict, Generic, Iterable, List, Tuple, TypeVar

from . import exceptions as exc
from ._types import OperationRef

if TYPE_CHECKING:  # pragma: no cover
    from ._session import Session

__all__ = ["RemoteFunction"]

R = TypeVar("R")

#: Largest payload (source, values and arguments) sent to a sandbox.
MAX_PAYLOAD_BYTES = 16 << 20

#: Run inside the sandbox: read the payload, rebuild the function, call it,
#: write the JSON result. Exceptions propagate as a normal traceback on stderr.
_RUNNER = """
import importlib, json, sys
with open(sys.argv[1]) as f:
    p = json.load(f)
ns = {"__name__": "__sbx_remote__"}
for alias, mod in p["imports"].items():
    ns[alias] = importlib.import_module(mod)
ns.update(p["values"])
exec(compile(p["source"], "<remote " + p["name"] + ">", "exec"), ns)
out = ns[p["name"]](*p["args"], **p["kwargs"])
with open(sys.argv[2], "w") as f:
    json.dump(out, f)
"""


def _source_without_decorators(fn: Callable[..., Any]) -> str:
    """fn's source with every decorator removed (so @session.function() does
    not run again inside the sandbox)."""
    try:
        src = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as e:
        raise exc.FunctionError(
            f"cannot read the source of {getattr(fn, '__name__', fn)!r} ({e}): remote functions must be "
            "defined with def in a file or a notebook cell", reason="INVALID_ARGUMENT") from e
    tree = ast.parse(src)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == fn.__name__:
            node.decorator_list = []
            return ast.unparse(node)
    raise exc.FunctionError(f"cannot find def {fn.__name__} in its source: use a def, not a lambda", reason="INVALID_ARGUMENT")


def _json_ok(v: Any) -> bool:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return False
    return True


def _free_names(code: types.CodeType) -> List[str]:
    """Global names read by code and the code objects nested in it."""
    names = list(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names += _free_names(c)
    return names


def _captured(fn: Callable[..., Any]) -> Tuple[Dict[str, str], Dict[str, Any]]:
    """The modules (alias -> module name) and JSON values fn reads from its
    globals and closure."""
    imports: Dict[str, str] = {}
    values: Dict[str, Any] = {}
    cv = inspect.getclosurevars(fn)
    scope = {**{n: fn.__globals__[n] for n in _free_names(fn.__code__) if n in fn.__globals__}, **cv.nonlocals}
    for name, v in scope.items():
        if isinstance(v, types.ModuleType):
            imports[name] = v.__name__
        elif _json_ok(v):
            values[name] = v
    return imports, values


class RemoteFunction(Generic[R]):
    """A function that runs in a sandbox: ``.remote(*args)`` returns an
    operation of its result, ``.map(items)`` one per argument tuple (all at
    once), ``.local(*args)`` calls it here.

    Each call gets a fresh sandbox of the session (its defaults, overridden by
    the decorator's arguments), stopped once the call returned. A call whose
    function raises fails with SandboxExecutionError (``exception_type`` and
    ``exception_message`` name the exception)."""

    def __init__(self, fn: Callable[..., R], session: "Session", sandbox_kwargs: Dict[str, Any]) -> None:
        inner = inspect.unwrap(fn)
        if inspect.iscoroutinefunction(inner) or inspect.isasyncgenfunction(inner):
            raise exc.AsyncFunctionError(
                f"{fn.__name__} is async: remote functions must be plain functions (call asyncio.run inside one)",
                reason="INVALID_ARGUMENT")
        self._fn = fn
        self._inner = inner
        self._session = session
        self._kw = dict(sandbox_kwargs)
        functools.update_wrapper(self, fn)

    def local(self, *args: Any, **kwargs: Any) -> R:
        """Call the function in this process (for tests)."""
        return self._fn(*args, **kwargs)

    def map(self, items: Iterable[Tuple[Any, ...]]) -> List[OperationRef[R]]:
        """Start one remote call per tuple of positional arguments; the operations in order."""
        return [self.remote(*item) for item in items]

    def remote(self, *args: Any, **kwargs: Any) -> OperationRef[R]:
        """Run the function in a new sandbox; the operation returns its result."""
        imports, values = _captured(self._inner)
        payload = json.dumps({"source": _source_without_decorators(self._inner), "name": self._inner.__name__,
                              "imports": imports, "values": values, "args": list(args), "kwargs": kwargs},
                             default=_refuse).encode()
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise exc.FunctionError(f"{self.__name__}: {len(payload)} bytes of arguments and values; at most {MAX_PAYLOAD_BYTES}",
                                    reason="INVALID_ARGUMENT")
        return OperationRef.spawn(self._call, payload, name="sbx-function")

    def _call(self, payload: bytes) -> R:
        sb = self._session.sandbox(**self._kw)
        tmp = (self._session.defaults.temp_dir or "/tmp").rstrip("/")
        key = uuid.uuid4().hex
        src, dst = f"{tmp}/sbx-fn-{key}.json", f"{tmp}/sbx-fn-{key}.out.json"
        try:
            sb.write_file(src, payload).result()
            res = sb.exec(["python", "-c", _RUNNER, src, dst]).result()
            if res.returncode != 0:
                err = exc.SandboxExecutionError(
                    f"remote function {self.__name__} failed in sandbox {sb.sandbox_id}", exec_result=res,
                    reason="FUNCTION_FAILED")
                if err.exception_type:
                    err.message = err.args[0] + f": {err.exception_type}: {err.exception_message}"
                raise err
            return json.loads(sb.read_file(dst).result())  # type: ignore[no-any-return]
        finally:
            sb.stop(graceful_shutdown_seconds=1, missing_ok=True).result()


def _refuse(v: Any) -> Any:
    raise TypeError(f"remote functions take and return JSON values (numbers, strings, lists, dicts); "
                    f"{type(v).__name__} is not one: convert it first")
