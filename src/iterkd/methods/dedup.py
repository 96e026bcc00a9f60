"""Is a new exercise one we already have, reworded? A paraphrase-aware similarity of two exercises, for Stage III.

MinHash over word 5-grams of the statement (the first de-duplication) misses rewordings: "find the largest number in
a given list" and "find the maximum number in a list of integers" share no 5-gram. Here an exercise is three sets
of features, each compared by Jaccard similarity:

    words     content words of the normalised statement (lower case, light stemming, a few synonyms folded:
              largest/maximum/biggest -> max, integers/numbers/elements/items -> item, ...; the words every
              exercise has, "write a python function to", dropped)
    calls     the names the reference solution calls or reads attributes of (len, max, sorted, .split, math.pi:
              what it does, not what its variables are called)
    shape     3-grams of the reference solution's AST node types in walk order (its control flow and operations)

    similarity = (1 - code_weight) * words + code_weight * (calls + shape) / 2

On the 2,080 hand-labelled pairs of the smoke run's exercises (experiments/iterkd-mini/dedup/) the words alone
found 15 of 16 near-duplicate pairs at 0.8 with one false match, and adding the solution's features made it worse
(paraphrased exercises come with differently written solutions): code_weight defaults to 0.
Two exercises are near-duplicates when the similarity reaches a threshold (IterKDConfig.dedup_threshold), chosen on
hand-labelled pairs (experiments/iterkd-mini/dedup/). Without a reference solution only the words count.

Two versions of the words, each a de-duplication of its own (``iterkd.dedup``: a run keeps the one it was made with):
version 1 (``words``) as above; version 2 (``words2``, the default) after the IterKD miniature's round 1, whose 41 new
questions repeated themselves 6 times under version 1's 0.8 ("the maximum value in a list" vs "the maximum number in
a given list of numbers": value was dropped; "using a loop", "without using the built-in reverse()" added words):
value and values fold into item, how-to hints (using ..., without ...) are cut before the words are taken, and
specific, specified, certain, single are glue words. On both label sets (25 near-duplicate pairs) version 2 finds 22 at
0.8 with 1 false match, version 1 15 with 1 (experiments/iterkd-mini/dedup/results.json).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

# words every exercise statement uses, and glue words
_STOP = set(
    "a an the and or of to in on for from with by as is are be that this these those it its into at which each "
    "every all any given write python function program method create implement define return returns find "
    "calculate compute determine get check whether if using use new your you should takes take input output "
    "two three one value values".split()
)
# synonyms folded into one word (after stemming)
_SAME = {
    "largest": "max", "maximum": "max", "biggest": "max", "greatest": "max", "highest": "max", "max": "max",
    "smallest": "min", "minimum": "min", "lowest": "min", "least": "min", "min": "min",
    "integer": "item", "number": "item", "element": "item", "item": "item", "entry": "item", "int": "item",
    "array": "list", "sequence": "list", "list": "list",
    "string": "str", "text": "str", "word": "word", "sentence": "str", "str": "str",
    "total": "sum", "sum": "sum", "add": "sum", "addition": "sum",
    "count": "count", "occurrence": "count", "frequency": "count", "many": "count",
    "reverse": "reverse", "reversed": "reverse", "backward": "reverse",
}  # fmt: skip


def _stem(word: str) -> str:
    for suffix in ("ies", "es", "s"):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            word = word[: -len(suffix)] + ("y" if suffix == "ies" else "")
            break
    return word


# version 2: value folded into item rather than dropped, a few more glue words, how-to hints cut
_STOP2 = (_STOP - {"value", "values"}) | {"specific", "specified", "certain", "single"}
_SAME2 = {**_SAME, "value": "item"}
_HINT = re.compile(r"\b(?:without\s+)?using\b[^.;]*|\bwithout\b[^.;]*")
VERSIONS = (1, 2)


def statement_words(text: str, version: int = 2) -> frozenset[str]:
    """The content words of an exercise statement, normalised as ``version`` (1 or 2) does."""
    if version not in VERSIONS:
        raise ValueError(f"unknown statement-words version {version!r}")
    stop, same = (_STOP, _SAME) if version == 1 else (_STOP2, _SAME2)
    text = text.lower() if version == 1 else _HINT.sub(" ", text.lower())
    words = (_stem(w) for w in re.findall(r"[a-z]+", text))
    return frozenset(same.get(w, w) for w in words if w not in stop and len(w) > 1)


_BODIES = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def solution_features(code: str) -> tuple[frozenset[str], frozenset[str]]:
    """(calls, shape) of a reference solution; empty sets when it does not parse."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return frozenset(), frozenset()
    for node in ast.walk(tree):  # a docstring says nothing of what the code does
        if isinstance(node, _BODIES) and ast.get_docstring(node, clean=False) is not None:
            node.body = node.body[1:] or [ast.Pass()]
    calls, types = set(), []
    for node in ast.walk(tree):
        types.append(type(node).__name__)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            calls.add(node.func.id)
        elif isinstance(node, ast.Attribute):
            calls.add("." + node.attr)
    shape = {" ".join(types[i : i + 3]) for i in range(max(1, len(types) - 2))}
    return frozenset(calls), frozenset(shape)


@dataclass(frozen=True)
class Features:
    words: frozenset[str]
    calls: frozenset[str]
    shape: frozenset[str]

    @classmethod
    def of(cls, statement: str, solution: str | None = None, version: int = 2) -> Features:
        calls, shape = solution_features(solution) if solution else (frozenset(), frozenset())
        return cls(statement_words(statement, version), calls, shape)


def _jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def similarity(a: Features, b: Features, code_weight: float = 0.0) -> float:
    """0..1; 1 = the same words (and, with ``code_weight`` > 0, the same calls and shape: that share of the score,
    split evenly between them; only when both exercises have a parsed solution)."""
    words = _jaccard(a.words, b.words)
    if not (code_weight and a.shape and b.shape):
        return words
    code = 0.5 * _jaccard(a.calls, b.calls) + 0.5 * _jaccard(a.shape, b.shape)
    return (1 - code_weight) * words + code_weight * code


class Exercises:
    """Exercises seen so far (the pool, the seeds, earlier new questions): ``match`` finds the closest one."""

    def __init__(self, threshold: float, code_weight: float = 0.0, version: int = 2) -> None:
        self.threshold, self.code_weight, self.version = threshold, code_weight, version
        self.items: list[tuple[str, Features]] = []

    def add(self, statement: str, solution: str | None = None, key: str | None = None) -> None:
        features = Features.of(statement, solution, self.version)
        self.items.append((str(len(self.items)) if key is None else key, features))

    def seen(self, statement: str, solution: str | None = None) -> bool:
        return self.match(statement, solution) is not None

    def match(self, statement: str, solution: str | None = None) -> tuple[str, float] | None:
        """(key, similarity) of the closest exercise at or above the threshold, else None."""
        f = Features.of(statement, solution, self.version)
        best = max(((k, similarity(f, g, self.code_weight)) for k, g in self.items), key=lambda kv: kv[1], default=None)
        return best if best is not None and best[1] >= self.threshold else None


class NearDuplicates:
    """The first de-duplication (kept as ``iterkd.dedup: minhash``): MinHash LSH over word 5-grams of the text
    (datasketch); same ``seen``/``add`` as Exercises."""

    def __init__(self, threshold: float, texts: list[str] = ()) -> None:
        from datasketch import MinHashLSH

        self.lsh = MinHashLSH(threshold=threshold, num_perm=128)
        self.n = 0
        for text in texts:
            self.add(text)

    @staticmethod
    def _minhash(text: str):
        from datasketch import MinHash

        words = re.findall(r"\w+", text.lower())
        grams = {" ".join(words[i : i + 5]) for i in range(max(1, len(words) - 4))}
        m = MinHash(num_perm=128, seed=1)
        for g in grams:
            m.update(g.encode())
        return m

    def seen(self, text: str) -> bool:
        return bool(self.lsh.query(self._minhash(text)))

    def add(self, text: str) -> None:
        self.lsh.insert(f"q{self.n}", self._minhash(text))
        self.n += 1


KINDS = {"words2": 2, "words": 1}  # the paraphrase-aware de-duplications and their statement-words version


def near_duplicates(kind: str, threshold: float, texts: list[str] = ()) -> Exercises | NearDuplicates:
    """The de-duplication of ``kind`` ("words2", "words": paraphrase-aware, Exercises with statement words of
    version 2 or 1; "minhash": word 5-grams), holding ``texts``; ``seen(text)`` and ``add(text)``."""
    if kind not in (*KINDS, "minhash"):
        raise ValueError(f"unknown de-duplication {kind!r}")
    index = Exercises(threshold, version=KINDS[kind]) if kind in KINDS else NearDuplicates(threshold)
    for text in texts:
        index.add(text)
    return index
