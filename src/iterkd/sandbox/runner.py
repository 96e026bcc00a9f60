"""Code that runs inside the job child: exec the program, the setup and the tests; report the verdict.

The verdict travels on a dedicated pipe as one line `<token><kind><json>` where the token is a random
per-job secret held only by this module's call frame (never in the program's globals, the environment
or argv). The worker accepts "passed" only from such a line, written after the last test returned;
then the process leaves with `os._exit` (no atexit handlers, no interpreter teardown). Exit codes,
`SystemExit`, output on any fd and atexit handlers therefore cannot produce a pass.
"""

from __future__ import annotations

import ast
import builtins
import json
import operator
import os
import reprlib
import sys

# Bound at import time (before any user code runs), so monkeypatching os/json/builtins later cannot
# change what the verdict path does.
_write = os.write
_exit = os._exit
_enc_str = json.encoder.encode_basestring_ascii
_str, _int, _len, _type, _isinstance = str, int, len, type, isinstance

_PLAIN_FUNCS = frozenset(
    "abs all any bool dict enumerate filter float frozenset hash int isinstance issubclass len list map max "
    "min next print range repr reversed round set sorted str sum tuple type zip isclose allclose array_equal "
    "approx".split()
)

_PLAIN_TYPES = (int, float, complex, str, bytes, bool, list, tuple, dict, set, frozenset)

_CMP_OPS = {
    ast.Eq: (operator.eq, "=="),
    ast.NotEq: (operator.ne, "!="),
    ast.Lt: (operator.lt, "<"),
    ast.LtE: (operator.le, "<="),
    ast.Gt: (operator.gt, ">"),
    ast.GtE: (operator.ge, ">="),
    ast.Is: (operator.is_, "is"),
    ast.IsNot: (operator.is_not, "is not"),
    ast.In: (lambda a, b: a in b, "in"),
    ast.NotIn: (lambda a, b: a not in b, "not in"),
}

_repr = reprlib.Repr()
_repr.maxlevel = 6
_repr.maxtuple = _repr.maxlist = _repr.maxarray = _repr.maxdict = 64
_repr.maxset = _repr.maxfrozenset = _repr.maxdeque = 64
_repr.maxstring = _repr.maxlong = _repr.maxother = 400


def _cut(s: str, n: int) -> str:
    return s if len(s) <= n else s[: max(0, n - 14)] + "...[truncated]"


def short_repr(v, n: int = 400) -> str:
    try:
        r = _repr.repr(v)
    except BaseException as e:
        r = f"<repr failed: {type(e).__name__}>"
    return _cut(r, n)


def format_exc(e: BaseException, n: int = 600) -> str:
    try:
        msg = str(e)
    except BaseException:
        msg = "<str() failed>"
    name = type(e).__name__
    return _cut(f"{name}: {msg}" if msg else name, n)


class _Verdict:
    """Writes token-authenticated records to the verdict fd. The token lives only in this object's
    closure cell, which is created after the program was compiled and is not reachable from its globals."""

    def __init__(self, fd: int, token: str):
        def emit(kind: str, payload: dict, _fd=fd, _tok=token) -> None:
            parts = []
            for k, v in payload.items():
                if v is None:
                    enc = "null"
                elif v is True or v is False:
                    enc = "true" if v else "false"
                elif _type(v) is _int:
                    enc = _int.__repr__(v)
                else:
                    enc = _enc_str(_str(v))
                parts.append(_enc_str(k) + ":" + enc)
            data = ("\n" + _tok + kind + "{" + ",".join(parts) + "}\n").encode("ascii")
            view = memoryview(data)
            while view:
                try:
                    view = view[_write(_fd, view) :]
                except InterruptedError:
                    continue

        self.emit = emit


def _sneaky_eq(v, depth: int = 0) -> bool:
    """True when v (or an element of a builtin container) has an __eq__ written in exec'd code
    (an "always equal" object): such an object must not satisfy `assert f(x) == expected`."""
    t = _type(v)
    for klass in t.__mro__:
        eq = klass.__dict__.get("__eq__")
        if eq is not None:
            code = getattr(eq, "__code__", None)
            if code is not None and code.co_filename.startswith("<"):
                return True
            break
    if depth >= 4:
        return False
    if t in (list, tuple, set, frozenset):
        return any(_sneaky_eq(x, depth + 1) for i, x in zip(range(2000), v))
    if t is dict:
        return any(_sneaky_eq(k, depth + 1) or _sneaky_eq(x, depth + 1) for i, (k, x) in zip(range(2000), v.items()))
    return False


def _scope_walk(node):
    """ast.walk that does not descend into lambdas, comprehensions, functions or classes (their names
    resolve in another scope, so sub-expressions there cannot be evaluated on their own)."""
    todo = [node]
    while todo:
        n = todo.pop(0)
        yield n
        for c in ast.iter_child_nodes(n):
            if not isinstance(
                c,
                (
                    ast.Lambda,
                    ast.ListComp,
                    ast.SetComp,
                    ast.DictComp,
                    ast.GeneratorExp,
                    ast.FunctionDef,
                    ast.AsyncFunctionDef,
                    ast.ClassDef,
                ),
            ):
                todo.append(c)


def _call_name(call: ast.Call) -> str:
    f = call.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr
    return ""


def _focus_call(expr) -> ast.Call | None:
    """The call under test in an expression: the first call (outermost first) of a non-builtin function."""
    for n in _scope_walk(expr):
        if isinstance(n, ast.Call) and _call_name(n) not in _PLAIN_FUNCS:
            return n
    return None


def _has_call(expr) -> bool:
    return any(isinstance(n, ast.Call) for n in ast.walk(expr))


class _Subst(ast.NodeTransformer):
    def __init__(self, names: dict):
        self.names = names

    def visit(self, node):
        name = self.names.get(id(node))
        if name is not None:
            return ast.copy_location(ast.Name(id=name, ctx=ast.Load()), node)
        return super().visit(node)


# Parsed tests and compiled assert parts, filled by `warm` in the worker before it forks a job, so the
# samples of one task (pass@k) share the work; a job child only reads them (its own additions die with it).
_TREES: dict = {}
_CODES: dict = {}
_CACHE_MAX = 20000


def _parse_test(src: str, filename: str):
    key = (src, filename)
    tree = _TREES.get(key)
    if tree is None:
        if len(_TREES) >= _CACHE_MAX:
            _TREES.clear()
            _CODES.clear()
        tree = _TREES[key] = ast.parse(src, filename)
    return tree


def _compile_expr(expr, filename: str, cache: bool = False):
    # parsed nodes carry their locations (and _Subst copies them), so no fix_missing_locations walk
    hit = _CODES.get(id(expr)) if cache else None
    if hit is not None and hit[0] is expr and hit[1] == filename:
        return hit[2]
    code = compile(ast.Expression(body=expr), filename, "eval")
    if cache:
        _CODES[id(expr)] = (expr, filename, code)  # holding expr keeps its id from being reused
    return code


def _eval(expr, ns, filename, env=None, cache=False):
    code = _compile_expr(expr, filename, cache)
    return eval(code, ns, env) if env is not None else eval(code, ns)


def _eval_parts(expr, parts, ns, filename):
    """Evaluate `parts` (sub-expressions of `expr`, outside nested scopes) once each, then `expr` with
    those parts replaced by their values. Returns (values, value of expr)."""
    vals, env, names = [], {}, {}
    for k, p in enumerate(parts):
        v = _eval(p, ns, filename, cache=True)
        vals.append(v)
        env[f"__iterkd_part{k}__"] = v
        names[id(p)] = f"__iterkd_part{k}__"
    if len(parts) == 1 and parts[0] is expr:
        return vals, vals[0]
    if (
        isinstance(expr, ast.Compare)
        and len(expr.ops) == 1
        and len(parts) == 2
        and parts[0] is expr.left
        and parts[1] is expr.comparators[0]
    ):
        return vals, _CMP_OPS[type(expr.ops[0])][0](vals[0], vals[1])  # same semantics as the operator
    whole = _Subst(names).visit(expr)
    return vals, _eval(whole, ns, filename, env)


class TestFailure(Exception):
    """A test did not hold; `feedback` is ready for the teacher."""

    def __init__(self, feedback: str):
        super().__init__(feedback)
        self.feedback = feedback


def _src(src: str, node) -> str:
    seg = ast.get_source_segment(src, node)
    return seg if seg is not None else ast.unparse(node)


def _call_text(src: str, call, ns) -> str:
    """Source of a call with plain-name arguments replaced by their current values (useful in loops)."""
    try:
        if not isinstance(call, ast.Call) or not any(isinstance(a, ast.Name) for a in call.args):
            return _src(src, call)
        args = [
            short_repr(ns[a.id], 200)
            if isinstance(a, ast.Name) and _type(ns.get(a.id)) in _PLAIN_TYPES
            else _src(src, a)
            for a in call.args
        ]
        args += [f"{k.arg}={_src(src, k.value)}" if k.arg else f"**{_src(src, k.value)}" for k in call.keywords]
        return f"{_src(src, call.func)}({', '.join(args)})"
    except Exception:
        return _src(src, call)


def _error_feedback(inp: str, e: BaseException) -> str:
    return f"INPUT: {inp}\nERROR: {format_exc(e)}"


def _abs_diff_parts(cmp: ast.Compare):
    """abs(A - B) < eps -> (A, B, eps) else None."""
    left = cmp.left
    if (
        isinstance(cmp.ops[0], (ast.Lt, ast.LtE))
        and isinstance(left, ast.Call)
        and _call_name(left) == "abs"
        and len(left.args) == 1
        and isinstance(left.args[0], ast.BinOp)
        and isinstance(left.args[0].op, ast.Sub)
    ):
        return left.args[0].left, left.args[0].right, cmp.comparators[0]
    return None


def _plan(test) -> tuple[str, list]:
    """How an assert's expression is taken apart for feedback: (kind, sub-expressions to evaluate)."""
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        abs_parts = _abs_diff_parts(test)
        if abs_parts:
            return "abs", list(abs_parts)
        return "cmp", [test.left, test.comparators[0]]
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return "not", [test.operand]
    call = _focus_call(test)
    return "generic", [call] if call is not None else []


def warm(tests: list) -> None:
    """Parse the tests and compile their assert parts now (in the worker), so job children skip it."""
    for i, src in enumerate(tests):
        try:
            tree = _parse_test(str(src), f"<test {i}>")
        except (SyntaxError, ValueError):
            continue
        if len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert):
            for part in _plan(tree.body[0].test)[1]:
                _compile_expr(part, f"<test {i}>", cache=True)


def run_assert(node: ast.Assert, src: str, ns: dict, filename: str) -> None:
    """Run one top-level `assert` with its parts evaluated separately; raise TestFailure on failure."""
    test = node.test
    kind, parts = _plan(test)
    focus = _focus_call(test)
    try:
        vals, value = _eval_parts(test, parts, ns, filename)
        if kind == "cmp" and isinstance(test.ops[0], ast.Eq):
            ok = (
                bool(value)
                and not (_sneaky_eq(vals[0]) and not _sneaky_eq(vals[1]))
                and not (_sneaky_eq(vals[1]) and not _sneaky_eq(vals[0]))
            )
        else:
            ok = bool(value)
    except TestFailure:
        raise
    except BaseException as e:
        if isinstance(e, MemoryError):
            raise
        inp = _src(src, focus) if focus is not None else _src(src, node)
        raise TestFailure(_error_feedback(inp, e)) from None
    if ok:
        return
    whole_src = _src(src, node)
    msg = ""
    if node.msg is not None:
        try:
            msg = "\nMESSAGE: " + short_repr(_eval(node.msg, ns, filename), 300)
        except BaseException:
            msg = ""
    if kind == "cmp":
        left, right = parts  # (test itself was rewritten by _eval_parts)
        lv, rv = vals
        if not _has_call(left) and _has_call(right) and isinstance(test.ops[0], ast.Eq):
            left, right, lv, rv = right, left, rv, lv
        op = _CMP_OPS.get(type(test.ops[0]), (None, "?"))[1]
        if op == "==":
            expected = short_repr(rv)
            if _sneaky_eq(lv) or _sneaky_eq(rv):
                expected += f" (an object of type {type(lv).__name__} that overrides __eq__ does not count)"
        else:
            expected = f"a value {op} {short_repr(rv)}"
        fb = f"INPUT: {_src(src, left)}\nOUTPUT: {short_repr(lv)}\nEXPECTED: {expected}"
    elif kind == "abs":
        a, b, eps = vals
        a_node = parts[0]
        fb = f"INPUT: {_src(src, a_node)}\nOUTPUT: {short_repr(a)}\nEXPECTED: {short_repr(b)} (tolerance {short_repr(eps, 60)})"
    elif kind == "not":
        fb = f"INPUT: {_src(src, parts[0])}\nOUTPUT: {short_repr(vals[0])}\nEXPECTED: a falsy value (test: {whole_src})"
    elif parts:
        fb = f"INPUT: {_src(src, parts[0])}\nOUTPUT: {short_repr(vals[0])}\nEXPECTED: {whole_src} to hold"
    else:
        fb = f"INPUT: {whole_src}\nOUTPUT: {short_repr(value)}\nEXPECTED: a truthy value"
    raise TestFailure(fb + msg)


def _failing_line(e: BaseException, filename: str) -> int | None:
    tb, line = e.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


_L, _R, _C = "__iterkd_l__", "__iterkd_r__", "__iterkd_c__"


class _RecordAsserts(ast.NodeTransformer):
    """Rewrites asserts of test code (tests and setup, including `def check(candidate): ...` bodies) so the
    values needed for feedback are kept without evaluating anything twice:
      assert L == R   ->  __iterkd_l__ = L; __iterkd_r__ = R; assert __iterkd_l__ == __iterkd_r__
      assert E(C)     ->  __iterkd_c__ = C; assert E(__iterkd_c__)      (C: the call under test)
    The names are module globals of the job (declared `global` inside functions)."""

    def __init__(self):
        self.rewrote = [False]

    def visit_FunctionDef(self, node):
        self.rewrote.append(False)
        self.generic_visit(node)
        if self.rewrote.pop():
            node.body.insert(0, ast.copy_location(ast.Global(names=[_L, _R, _C]), node.body[0]))
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        return node

    def visit_Assert(self, node):
        t = node.test
        mk = lambda name, ctx=ast.Load(): ast.Name(id=name, ctx=ctx)  # noqa: E731
        if isinstance(t, ast.Compare) and len(t.ops) == 1 and isinstance(t.ops[0], ast.Eq):
            new = [
                ast.Assign(targets=[mk(_L, ast.Store())], value=t.left),
                ast.Assign(targets=[mk(_R, ast.Store())], value=t.comparators[0]),
                ast.Assert(test=ast.Compare(left=mk(_L), ops=[ast.Eq()], comparators=[mk(_R)]), msg=node.msg),
            ]
        else:
            call = _focus_call(t)
            if call is None:
                return node
            new = [
                ast.Assign(targets=[mk(_C, ast.Store())], value=call),
                ast.Assert(test=_Subst({id(call): _C}).visit(t), msg=node.msg),
            ]
        self.rewrote[-1] = True
        for n in new:
            ast.copy_location(n, node)
            n.end_lineno = node.end_lineno
        return new


def rewrite(src: str, filename: str):
    return ast.fix_missing_locations(_RecordAsserts().visit(ast.parse(src, filename)))


def _innermost(e: BaseException, sources: dict):
    """(filename, line, frame) of the innermost traceback entry in test code (a test or the setup)."""
    tb, found = e.__traceback__, (None, None, None)
    while tb is not None:
        fn = tb.tb_frame.f_code.co_filename
        if fn in sources:
            found = (fn, tb.tb_lineno, tb.tb_frame)
        tb = tb.tb_next
    return found


def _plain_value(src: str, node, names: dict):
    """Value of a call-free expression (constants, names, arithmetic), else its source."""
    if node is None:
        return ""
    if any(
        isinstance(n, (ast.Call, ast.Lambda, ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom))
        for n in ast.walk(node)
    ):
        return _src(src, node)
    try:
        return short_repr(_eval(node, {"__builtins__": {}}, "<feedback>", dict(names)))
    except Exception:
        return _src(src, node)


def block_feedback(e: BaseException, sources: dict, ns: dict, fallback: str) -> str:
    """Feedback for an exception raised while running a test block (maybe inside a setup `check`)."""
    fn, line, frame = _innermost(e, sources)
    if fn is None:
        return (
            _error_feedback(fallback, e)
            if not isinstance(e, AssertionError)
            else f"INPUT: {fallback}\nOUTPUT: assertion failed"
        )
    src = sources[fn]
    stmt = _stmt_at(ast.parse(src, fn), line)
    names = dict(ns)
    if frame.f_locals is not ns:
        names.update(frame.f_locals)
    stmt_src = _src(src, stmt) if stmt is not None else fallback
    if isinstance(e, AssertionError) and isinstance(stmt, ast.Assert):
        t = stmt.test
        if isinstance(t, ast.Compare) and len(t.ops) == 1 and isinstance(t.ops[0], ast.Eq) and _L in ns:
            lhs, lv, rv = t.left, ns.get(_L), ns.get(_R)
            if not _has_call(lhs) and _has_call(t.comparators[0]):
                lhs, lv, rv = t.comparators[0], rv, lv
            exp = short_repr(rv)
            if _sneaky_eq(lv):
                exp += " (objects overriding __eq__ do not count)"
            return f"INPUT: {_call_text(src, lhs, names)}\nOUTPUT: {short_repr(lv)}\nEXPECTED: {exp}"
        call = _focus_call(t)
        if call is not None and _C in ns:
            out = short_repr(ns.get(_C))
            inp = _call_text(src, call, names)
            if isinstance(t, ast.Compare):
                ab = _abs_diff_parts(t)
                if ab and ab[0] is call or (ab and any(n is call for n in ast.walk(ab[0]))):
                    return (
                        f"INPUT: {inp}\nOUTPUT: {out}\nEXPECTED: {_plain_value(src, ab[1], names)} "
                        f"(tolerance {_plain_value(src, ab[2], names)})"
                    )
                if t.left is call and len(t.ops) == 1:
                    op = _CMP_OPS.get(type(t.ops[0]), (None, "?"))[1]
                    return f"INPUT: {inp}\nOUTPUT: {out}\nEXPECTED: a value {op} {_plain_value(src, t.comparators[0], names)}"
            if isinstance(t, ast.UnaryOp) and isinstance(t.op, ast.Not) and t.operand is call:
                return f"INPUT: {inp}\nOUTPUT: {out}\nEXPECTED: a falsy value"
            if t is call:
                return f"INPUT: {inp}\nOUTPUT: {out}\nEXPECTED: a truthy value"
            return f"INPUT: {inp}\nOUTPUT: {out}\nEXPECTED: {_cut(stmt_src, 300)} to hold"
        return f"INPUT: {_cut(stmt_src, 300)}\nOUTPUT: assertion failed"
    focus = _focus_call(stmt) if stmt is not None else None
    inp = _call_text(src, focus, names) if focus is not None else _cut(stmt_src, 300)
    if isinstance(e, AssertionError):
        return f"INPUT: {inp}\nOUTPUT: assertion failed: {_cut(stmt_src, 300)}"
    return _error_feedback(inp, e)


def _stmt_at(tree, lineno: int):
    best = None
    for n in ast.walk(tree):
        if isinstance(n, ast.stmt) and n.lineno <= lineno <= (n.end_lineno or n.lineno):
            if best is None or (n.lineno, -(n.end_lineno or 0)) >= (best.lineno, -(best.end_lineno or 0)):
                best = n
    return best


def run_block(src: str, ns: dict, filename: str, sources: dict) -> None:
    """Run a multi-statement test block (loops, `check(candidate)` calls...); raise TestFailure on failure."""
    code = compile(rewrite(src, filename), filename, "exec")
    try:
        exec(code, ns)
    except MemoryError:
        raise
    except BaseException as e:
        raise TestFailure(block_feedback(e, sources, ns, _cut(src.strip(), 300))) from None
    finally:
        for k in (_L, _R, _C):
            ns.pop(k, None)


def run_test(src: str, ns: dict, filename: str, sources: dict) -> None:
    tree = _parse_test(src, filename)
    if len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert):
        run_assert(tree.body[0], src, ns, filename)
    else:
        sources[filename] = src
        try:
            run_block(src, ns, filename, sources)
        finally:
            del sources[filename]


def _syntax_reason(e: SyntaxError, what: str) -> str:
    where = f" (line {e.lineno})" if e.lineno else ""
    return _cut(f"SyntaxError in the {what}: {e.msg}{where}", 300)


def _exec_program_and_setup(job: dict, ns: dict, state: dict, finish) -> None:
    """Compile and run the program, then the setup, in ``ns``; on an error fill ``state`` and ``finish()``
    (which writes the verdict and exits the process)."""
    for what, src in (("program", job.get("program", "")), ("setup", job.get("setup") or "")):
        try:
            # the setup's asserts (e.g. inside `def check(candidate)`) are rewritten to keep feedback values
            code = compile(rewrite(src, "<setup>") if what == "setup" else src, f"<{what}>", "exec")
        except (SyntaxError, ValueError) as e:
            state["reason"] = (
                _syntax_reason(e, what) if isinstance(e, SyntaxError) else f"cannot compile the {what}: {e}"
            )
            state["feedback"] = "ERROR: " + state["reason"]
            finish()
        try:
            exec(code, ns)
        except BaseException as e:
            line = _failing_line(e, f"<{what}>")
            at = f" (line {line} of the {what})" if line else f" (in the {what})"
            if isinstance(e, MemoryError):
                state["reason"] = "out of memory (MemoryError)" + at
            elif isinstance(e, SystemExit):
                state["reason"] = f"SystemExit({short_repr(e.code, 50)}) at top level of the {what}"
            else:
                state["reason"] = _cut(format_exc(e, 250) + at, 300)
            state["feedback"] = "ERROR: " + state["reason"]
            finish()


def run_job(job: dict, token: str, verdict_fd: int, feedback_chars: int = 1000, progress=None) -> None:
    """Run program, setup and tests; write the verdict; leave with os._exit. Never returns.

    ``progress(k)`` records that k tests completed (-1 before the program and setup finished) where the
    worker can read it after a crash or timeout (a shared memory word: no syscall per test). It only
    locates a failure; a pass needs the token-authenticated verdict."""
    verdict = _Verdict(verdict_fd, token)
    emit = verdict.emit
    del token
    tests = job.get("tests") or []
    out, err = sys.stdout, sys.stderr
    state = {"status": "error", "tests_run": 0, "failed_test": None, "feedback": "", "reason": ""}

    def finish(_exit=_exit):
        for stream in (out, err):
            try:
                stream.flush()
            except BaseException:
                pass
        state["feedback"] = _cut(state["feedback"], feedback_chars)
        emit("V", state)
        _exit(0)

    try:
        ns = {"__name__": "__main__", "__builtins__": builtins}
        sources = {"<setup>": job.get("setup") or ""}
        _exec_program_and_setup(job, ns, state, finish)
        if progress is not None:
            progress(0)  # program and setup done: a later crash/timeout points at a test
        for i, src in enumerate(tests):
            filename = f"<test {i}>"
            try:
                run_test(src, ns, filename, sources)
            except SyntaxError as e:
                state.update(status="error", failed_test=i, reason=_syntax_reason(e, f"test {i}"))
                state["feedback"] = "ERROR: " + state["reason"]
                finish()
            except TestFailure as f:
                state.update(status="failed", failed_test=i, feedback=f.feedback)
                finish()
            except MemoryError:
                state.update(
                    status="error",
                    failed_test=i,
                    reason="out of memory (MemoryError)",
                    feedback=f"INPUT: {_cut(src.strip(), 300)}\nERROR: MemoryError",
                )
                finish()
            state["tests_run"] = i + 1
            if progress is not None:
                progress(i + 1)
        state.update(status="passed", reason="")
        finish()
    except BaseException as e:
        try:
            state.update(status="error", reason=_cut("sandbox runner failure: " + format_exc(e), 300))
            finish()
        finally:
            _exit(70)
