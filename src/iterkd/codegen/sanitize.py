"""Turn a chat model's answer into a program that can be executed against the task's tests.

``sanitize(answer, task)`` never raises; in the worst case it returns the answer unchanged. Steps:

1. Clean up: CRLF -> LF, drop ``<think>...</think>`` and chat special tokens (``<|im_end|>`` ...).
2. Candidates: every fenced block (```python / ```py / ``` with no language / ~~~; an unclosed fence runs to the
   end of the answer); blocks in other languages are used only if there is no Python-like block. Without
   fences the whole answer is the one candidate (raw code, or code with prose around it).
3. Each candidate is reduced to its largest span of whole lines that parses (so prose around code and a
   function cut off by max_tokens are dropped), preferring a span that defines ``entry_point``.
4. The first candidate that defines ``entry_point`` at top level wins. Otherwise, for code prompts
   (HumanEval), an answer that is only the function body (indented or not) is appended to the prompt.
   Otherwise the largest candidate with a function definition is used.
5. The chosen code is pruned with ``ast``: top-level imports, function and class definitions, simple
   assignments (not calling the answer's own functions or print/input/...) and try-blocks of imports are kept;
   calls, prints, asserts, loops and ``if __name__ == "__main__":`` blocks are dropped. A definition given
   several times keeps its last version (what running the answer would have used).
6. Names the chosen code uses but does not define are taken from the other candidates (their imports and
   definitions), and for code prompts, the prompt's import lines and helper definitions that the answer lacks
   are prepended (e.g. ``from typing import List``).
"""

from __future__ import annotations

import ast
import re
import textwrap

_SPECIAL = re.compile(r"<\|[A-Za-z0-9_]+\|>|</s>|<s>|<\|endoftext\|>")
_THINK = re.compile(r"<think>.*?</think>", re.S)
_FENCE_OPEN = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([A-Za-z0-9_+.#-]*)[^`]*$")
_PY_LANGS = {"", "python", "py", "python3", "py3", "pycon", "python2", "ipython", "sage"}
_CODE_START = re.compile(r"^(?:async[ \t]+def|def|class|import|from|@)\b|^[A-Za-z_][A-Za-z0-9_]*[ \t]*=[^=]")
_UNSAFE_CALLS = {"print", "input", "exit", "quit", "open", "eval", "exec", "breakpoint", "help"}
_MAX_LINES = 600
_MAX_PARSES = 3000
_RETURNS = re.compile(r"\b(?:return|yield|raise)\b")
_TYPING = {
    "List", "Dict", "Tuple", "Set", "FrozenSet", "Optional", "Union", "Any", "Callable", "Iterable", "Iterator",
    "Sequence", "Mapping", "Deque", "DefaultDict", "Counter", "Generator",
}  # fmt: skip


# --------------------------------------------------------------------------------------------- extraction


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _THINK.sub("", text)
    if "<think>" in text and "</think>" not in text:  # unfinished reasoning: nothing after it is an answer
        text = text.split("<think>", 1)[0]
    return _SPECIAL.sub("", text)


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) for each fenced block, in order; an unclosed fence runs to the end."""
    blocks: list[tuple[str, str]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = _FENCE_OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(1), m.group(2).lower()
        body: list[str] = []
        i += 1
        while i < len(lines):
            stripped = lines[i].strip()
            if stripped.startswith(fence[0] * 3) and set(stripped) <= {fence[0]} and len(stripped) >= len(fence):
                break
            body.append(lines[i])
            i += 1
        i += 1  # skip the closing fence (or run past the end)
        blocks.append((lang, "\n".join(body)))
    return blocks


def _candidates(text: str) -> list[str]:
    blocks = fenced_blocks(text)
    if not blocks:
        return [text]
    py = [code for lang, code in blocks if lang in _PY_LANGS]
    chosen = py or [code for _, code in blocks]
    return [c for c in chosen if c.strip()] or [text]


def _parses(src: str) -> ast.Module | None:
    try:
        return ast.parse(src)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None


def _defines(tree: ast.Module, name: str | None) -> bool:
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if name is None or node.name == name:
                return True
    return False


def _best_span(code: str, entry_point: str | None) -> tuple[str, ast.Module] | None:
    """The largest span of whole lines of ``code`` that parses (prefer one defining entry_point)."""
    code = textwrap.dedent(code).strip("\n")
    if not code.strip():
        return None
    tree = _parses(code)
    if tree is not None:
        return code, tree
    lines = code.split("\n")[:_MAX_LINES]
    n = len(lines)
    starts = [i for i, line in enumerate(lines) if _CODE_START.match(line)]
    # a span may end before any line that starts at column 0 (a new statement or prose), or at the end
    ends = [e for e in range(n, 0, -1) if e == n or (lines[e][:1].strip() and not lines[e].startswith("#"))]
    best: tuple[int, str, ast.Module] | None = None
    budget = _MAX_PARSES
    for s in starts:
        for e in ends:
            if e <= s:
                break
            if best is not None and e - s <= best[0]:
                break  # cannot beat the best so far
            src = "\n".join(lines[s:e]).rstrip()
            budget -= 1
            if budget < 0:
                break
            t = _parses(src)
            if t is None or not t.body:
                continue
            score = e - s + (10_000 if entry_point and _defines(t, entry_point) else 0)
            if best is None or score > best[0]:
                best = (score, src, t)
            break  # longest span from this start found
    if best is None:
        return None
    return best[1], best[2]


def extract_code(answer: str, entry_point: str | None = None) -> str:
    """The best code in ``answer`` (a span that parses, preferring one defining ``entry_point``), unpruned.

    Returns the answer stripped if no code parses. Never raises.
    """
    try:
        spans = [sp for c in _candidates(_clean(answer)) if (sp := _best_span(c, entry_point))]
        if not spans:
            return answer.strip()
        for src, tree in spans:
            if _defines(tree, entry_point):
                return src
        return max(spans, key=lambda sp: len(sp[0]))[0]
    except Exception:
        return answer.strip()


# --------------------------------------------------------------------------------------------- pruning


def _seg(lines: list[str], node: ast.stmt) -> str:
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return "\n".join(lines[start - 1 : node.end_lineno])


def _target_names(node: ast.stmt) -> list[str] | None:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    names: list[str] = []
    for t in targets:
        elts = t.elts if isinstance(t, (ast.Tuple, ast.List)) else [t]
        for e in elts:
            if not isinstance(e, ast.Name):
                return None
            names.append(e.id)
    return names


def _calls(node: ast.AST) -> set[str]:
    out = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            f = sub.func
            while isinstance(f, ast.Attribute):
                f = f.value
            if isinstance(f, ast.Name):
                out.add(f.id)
    return out


def _used_names(nodes: list[ast.stmt]) -> set[str]:
    out = set()
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name):
                out.add(sub.id)
    return out


def _bound_by_import(node: ast.stmt) -> list[str]:
    names = []
    for alias in node.names:
        if alias.name == "*":
            continue
        names.append(alias.asname or alias.name.split(".")[0])
    return names


class _Program:
    """Top-level pieces of one parsed candidate: imports and definitions (name -> source), in order."""

    def __init__(self, src: str, tree: ast.Module) -> None:
        lines = src.split("\n")
        defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        self.imports: list[tuple[str, list[str], ast.stmt]] = []  # (source, bound names, node)
        self.defs: dict[str, tuple[str, ast.stmt]] = {}  # name -> (source, node); last wins, first position
        self.order: list[str] = []
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                seg = _seg(lines, node)
                if all(seg != s for s, _, _ in self.imports):
                    self.imports.append((seg, _bound_by_import(node), node))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self._add(node.name, _seg(lines, node), node)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                names = _target_names(node)
                if names and not (_calls(node.value) & (defined | _UNSAFE_CALLS)):
                    self._add("=" + ",".join(names), _seg(lines, node), node)
            elif isinstance(node, ast.Try) and all(
                isinstance(s, (ast.Import, ast.ImportFrom, ast.Assign, ast.Pass))
                for part in (node.body, *[h.body for h in node.handlers], node.orelse, node.finalbody)
                for s in part
            ):
                bound = [
                    b
                    for s in ast.walk(node)
                    if isinstance(s, (ast.Import, ast.ImportFrom))
                    for b in _bound_by_import(s)
                ]
                self.imports.append((_seg(lines, node), bound, node))
            # everything else (calls, prints, asserts, loops, if-blocks incl. __main__) is dropped

    def _add(self, key: str, seg: str, node: ast.stmt) -> None:
        if key not in self.defs:
            self.order.append(key)
        self.defs[key] = (seg, node)

    def names(self) -> set[str]:
        out = {k.lstrip("=") for k in self.defs}
        out = {x for k in out for x in k.split(",")}
        for _, bound, _ in self.imports:
            out.update(bound)
        return out

    def nodes(self) -> list[ast.stmt]:
        return [node for _, node in self.defs.values()]

    def body_source(self) -> str:
        return "\n\n\n".join(self.defs[k][0] for k in self.order)

    def import_sources(self) -> list[str]:
        return [s for s, _, _ in self.imports]


def _borrow(chosen: _Program, others: list[_Program]) -> tuple[list[str], list[str]]:
    """Imports and definitions from other candidates for names ``chosen`` uses but does not define."""
    import builtins

    have = chosen.names() | set(dir(builtins))
    missing = _used_names(chosen.nodes()) - have
    imports: list[str] = []
    defs: list[str] = []
    for _ in range(3):  # borrowed definitions may need more names
        if not missing:
            break
        new_missing: set[str] = set()
        for other in others:
            for seg, bound, _ in other.imports:
                if set(bound) & missing and seg not in imports:
                    imports.append(seg)
                    have.update(bound)
            for key in other.order:
                if key.startswith("="):
                    continue
                if key in missing and key not in have:
                    seg, node = other.defs[key]
                    defs.append(seg)
                    have.add(key)
                    new_missing |= _used_names([node])
        missing = (missing | new_missing) - have
    return imports, defs


# --------------------------------------------------------------------------------------------- prompt context


def _prompt_program(prompt: str, entry_point: str | None) -> _Program | None:
    """The prompt's imports and helper definitions (not entry_point), if the prompt is code."""
    if not prompt or not entry_point:
        return None
    tree = _parses(prompt)
    src = prompt
    if tree is None:
        src = prompt.rstrip() + "\n    pass\n"
        tree = _parses(src)
    if tree is None or not _defines(tree, entry_point):
        return None
    prog = _Program(src, tree)
    prog.defs.pop(entry_point, None)
    prog.order = [k for k in prog.order if k != entry_point]
    return prog


def _body_program(candidate: str, prompt: str) -> str | None:
    """Prompt + candidate when the candidate is only a function body (indented or not)."""
    lines = candidate.strip("\n").split("\n")
    if not any(line.strip() for line in lines):
        return None
    attempts = [lines]
    first_indented = next((i for i, line in enumerate(lines) if line[:1] in (" ", "\t") and line.strip()), None)
    if first_indented:  # prose before an indented body
        attempts.append(lines[first_indented:])
    for att in attempts:
        src = _body_attempt(att, prompt)
        if src is not None:
            return src
    return None


def _body_attempt(lines: list[str], prompt: str) -> str | None:
    first = next((line for line in lines if line.strip()), "")
    if first[:1] in (" ", "\t"):
        # indented continuation: keep lines up to the first line at column 0 that is not blank
        body = []
        for line in lines:
            if line.strip() and line[:1] not in (" ", "\t") and not line.startswith("#"):
                break
            body.append(line)
        lines = body
    body_src = textwrap.dedent("\n".join(lines)).strip("\n")
    if not body_src or re.search(r"^(?:async\s+def|def|class)\s", body_src):
        return None  # starts with a definition: not a bare body
    indent = "    "
    m = re.search(r"\n([ \t]+)\S", prompt.rstrip() + "\n")
    if m:
        indent = m.group(1)
    body_lines = body_src.split("\n")
    head = prompt.rstrip() + "\n"
    for end in range(len(body_lines), 0, -1):  # drop trailing lines (prose, truncation) until it parses
        kept = "\n".join(body_lines[:end])
        if not _RETURNS.search(kept):
            break
        src = head + textwrap.indent(kept, indent) + "\n"
        if _parses(src) is not None:
            return src
    return None


# --------------------------------------------------------------------------------------------- sanitize


def _task_fields(task, entry_point, prompt):
    ep = entry_point if entry_point is not None else getattr(task, "entry_point", None)
    pr = prompt if prompt is not None else None
    if pr is None and task is not None:
        from iterkd.codegen.prompts import prompt_is_code

        try:
            if prompt_is_code(task):
                pr = task.prompt
        except Exception:
            pr = None
    return ep or None, pr


def sanitize(answer: str, task=None, *, entry_point: str | None = None, prompt: str | None = None) -> str:
    """A complete program from a chat answer (see the module docstring). Never raises.

    ``task`` supplies ``entry_point`` and, for code prompts (HumanEval), ``prompt``; both can also be given
    directly (``prompt`` only for code prompts).
    """
    try:
        result = _sanitize(answer, *_task_fields(task, entry_point, prompt))
        return result if result is not None else answer
    except Exception:
        return answer if isinstance(answer, str) else str(answer)


def _sanitize(answer: str, entry_point: str | None, prompt: str | None) -> str | None:
    if not isinstance(answer, str):
        return None
    text = _clean(answer)
    cands = _candidates(text)
    spans = [(c, _best_span(c, entry_point)) for c in cands]
    parsed = [(c, sp) for c, sp in spans if sp is not None]

    chosen_src: str | None = None
    chosen_idx = -1
    for i, (_, (src, tree)) in enumerate(parsed):
        if _defines(tree, entry_point) if entry_point else _defines(tree, None):
            chosen_src, chosen_idx = src, i
            break
    ctx = _prompt_program(prompt, entry_point) if prompt else None
    if chosen_src is None and ctx is not None:
        # only a function body? (raw candidates keep their indentation)
        for c in cands:
            body = _body_program(c, prompt)
            if body is not None:
                chosen_src = body
                break
    if chosen_src is None and parsed:
        with_defs = [i for i, (_, (s, t)) in enumerate(parsed) if _defines(t, None)]
        pool = with_defs or list(range(len(parsed)))
        chosen_idx = max(pool, key=lambda i: len(parsed[i][1][0]))
        chosen_src = parsed[chosen_idx][1][0]
    if chosen_src is None:
        return None

    tree = _parses(chosen_src)
    if tree is None:
        return chosen_src
    chosen = _Program(chosen_src, tree)
    others = [_Program(s, t) for i, (_, (s, t)) in enumerate(parsed) if i != chosen_idx]
    borrowed_imports, borrowed_defs = _borrow(chosen, others)

    imports: list[str] = []
    pre_defs: list[str] = []
    if ctx is not None:
        have = chosen.names()
        for seg, _bound, _ in ctx.imports:
            if seg not in chosen.import_sources():
                imports.append(seg)
        for key in ctx.order:
            if key.startswith("="):
                names = key[1:].split(",")
                if not set(names) & have:
                    pre_defs.append(ctx.defs[key][0])
            elif key not in have:
                pre_defs.append(ctx.defs[key][0])
    for seg in chosen.import_sources() + borrowed_imports:
        if seg not in imports:
            imports.append(seg)
    # typing names used in annotations but never imported (a NameError when the def runs)
    bound = chosen.names() | {b for seg in imports for b in re.findall(r"\b\w+\b", seg)}
    need_typing = sorted((_used_names(chosen.nodes()) & _TYPING) - bound)
    if need_typing:
        imports.insert(0, f"from typing import {', '.join(need_typing)}")

    parts = []
    if imports:
        parts.append("\n".join(imports))
    parts.extend(pre_defs)
    parts.extend(borrowed_defs)
    body = chosen.body_source()
    if body:
        parts.append(body)
    program = "\n\n\n".join(p.strip("\n") for p in parts if p.strip()) + "\n"
    if _parses(program) is None:
        return chosen_src.rstrip() + "\n"
    return program
