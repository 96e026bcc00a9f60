"""Issue 31: the near-duplicate threshold of Stage III, chosen on hand-labelled pairs.

    python experiments/iterkd-mini/dedup/choose_threshold.py

Two label sets, each a file of exercises (statement, reference solution) and groups of near-duplicates read by hand
(every other pair is not one):

    smoke   items.jsonl + labels.json: the 65 exercises of the IterKD smoke run (28 seeds, 37 new questions),
            2,080 pairs, 16 near-duplicate pairs, 12 repeats among the new questions
    r1      items-r1.jsonl + labels-r1.json: the 41 new questions of the IterKD miniature's round 1, 820 pairs,
            9 near-duplicate pairs, 6 repeats

Every pair is scored with

    minhash-text   the first de-duplication: Jaccard of word 5-grams of the statement (MinHash estimates it)
    words          methods.dedup.similarity, statement words of version 1 (code_weight 0)
    words+code     version 1 with code_weight 0.5: 0.5 words + 0.25 calls + 0.25 AST shape of the reference solution
    words2         statement words of version 2 (the default de-duplication since the miniature's round 1)

and the script prints, per measure and threshold, precision / recall / F1 over both sets' pairs together and the
repeats found per set (a new question that duplicates an item listed before it). The chosen threshold (highest F1,
the highest threshold among ties) goes to results.json. Caveat: version 1's synonym list was written after reading
the smoke set and version 2 after reading the r1 set, so each is in-sample on the set that shaped it; only version 1
on the r1 set is out of sample (its 0.8 found 0 of the 6 repeats there).
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

from iterkd.methods.dedup import Features, similarity

HERE = Path(__file__).resolve().parent
THRESHOLDS = [round(0.05 * i, 2) for i in range(4, 20)]
SETS = {"smoke": ("items.jsonl", "labels.json"), "r1": ("items-r1.jsonl", "labels-r1.json")}


def grams(text: str) -> frozenset[str]:
    words = re.findall(r"\w+", text.lower())
    return frozenset(" ".join(words[i : i + 5]) for i in range(max(1, len(words) - 4)))


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def measures(items: list[dict]) -> dict:
    v1 = [Features.of(it["statement"], it["solution"], version=1) for it in items]
    v2 = [Features.of(it["statement"], it["solution"], version=2) for it in items]
    return {
        "minhash-text": lambda i, j: jaccard(grams(items[i]["statement"]), grams(items[j]["statement"])),
        "words": lambda i, j: similarity(v1[i], v1[j]),
        "words+code": lambda i, j: similarity(v1[i], v1[j], code_weight=0.5),
        "words2": lambda i, j: similarity(v2[i], v2[j]),
    }


def load_set(name: str) -> dict:
    items_file, labels_file = SETS[name]
    items = [json.loads(line) for line in (HERE / items_file).read_text().splitlines()]
    groups = json.loads((HERE / labels_file).read_text())["groups"].values()
    dup = {frozenset(p) for g in groups for p in itertools.combinations(g, 2)}
    pairs = [frozenset(p) for p in itertools.combinations(range(len(items)), 2)]
    new = [i for i, it in enumerate(items) if it["kind"] == "new"]
    repeats = {j for j in new if any(frozenset((i, j)) in dup for i in range(j))}
    return {"items": items, "dup": dup, "pairs": pairs, "new": new, "repeats": repeats, "measures": measures(items)}


def row(sets: dict, name: str, t: float, scores: dict) -> dict:
    tp = fp = 0
    out: dict = {"threshold": t}
    for set_name, d in sets.items():
        hit = {p for p in d["pairs"] if scores[set_name][p] >= t}
        tp, fp = tp + len(hit & d["dup"]), fp + len(hit - d["dup"])
        # a new question is a repeat when it duplicates an item listed before it (seeds come first)
        flagged = {j for j in d["new"] if any(frozenset((i, j)) in hit for i in range(j))}
        out[f"repeats_found_{set_name}"] = len(flagged & d["repeats"])
        out[f"false_repeats_{set_name}"] = len(flagged - d["repeats"])
    n_dup = sum(len(d["dup"]) for d in sets.values())
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / n_dup
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {**out, "precision": round(precision, 3), "recall": round(recall, 3), "f1": round(f1, 3),
            "pairs_found": tp, "false_pairs": fp}  # fmt: skip


def main() -> None:
    sets = {name: load_set(name) for name in SETS}
    out = {"sets": {n: {"items": len(d["items"]), "pairs": len(d["pairs"]), "duplicate_pairs": len(d["dup"]),
                        "repeats": len(d["repeats"])} for n, d in sets.items()}, "measures": {}}  # fmt: skip
    for n, d in out["sets"].items():
        print(f"{n}: {d['items']} exercises, {d['pairs']} pairs, {d['duplicate_pairs']} labelled near-duplicates, "
              f"{d['repeats']} repeats")  # fmt: skip
    print("\n| measure | threshold | precision | recall | F1 | repeats found smoke (of 12) | false | "
          "repeats found r1 (of 6) | false |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for name in sets["smoke"]["measures"]:
        scores = {n: {p: d["measures"][name](*sorted(p)) for p in d["pairs"]} for n, d in sets.items()}
        rows = [row(sets, name, t, scores) for t in THRESHOLDS]
        best = max(rows, key=lambda r: (r["f1"], r["threshold"]))
        out["measures"][name] = {"chosen": best, "by_threshold": rows}
        for r in rows:
            mark = " **chosen**" if r is best else ""
            print(f"| {name} | {r['threshold']}{mark} | {r['precision']} | {r['recall']} | {r['f1']} | "
                  f"{r['repeats_found_smoke']} | {r['false_repeats_smoke']} | {r['repeats_found_r1']} | "
                  f"{r['false_repeats_r1']} |")  # fmt: skip
    (HERE / "results.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
