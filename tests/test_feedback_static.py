"""The static view: real ruff over a batch of answers, counted per category, plus the unreachable-code pass."""

from iterkd.feedback.static import CATEGORIES, lint, unreachable


def test_each_category_is_found_in_its_own_answer():
    codes = [
        "def f(x):\n    return x + 1\n",  # clean
        "def f(x)\n    return x\n",  # syntax error
        "def f(x):\n    return x + y\n",  # undefined name
        "def f(x):\n    y = 2\n    return x\n",  # unused variable
        "import os\n\n\ndef f(x):\n    return x\n",  # unused import
        "def f(x):\n    return x\n    print(x)\n",  # unreachable
        "def f(x):\n    while True:\n        x += 1\n    return x\n",  # unreachable after an endless loop
    ]
    reports = lint(codes)
    assert reports[0].clean and reports[0].findings == []
    expect = [None, "syntax-error", "undefined-name", "unused-variable", "unused-import", "unreachable-code",
              "unreachable-code"]  # fmt: skip
    for report, category in zip(reports[1:], expect[1:]):
        assert report.counts[category] >= 1, (category, report.findings)
        assert sum(report.counts.values()) == report.counts[category], report.findings  # nothing else
    assert set(reports[0].counts) == set(CATEGORIES)
    assert reports[2].findings == ["line 2: [undefined-name] Undefined name `y`"]


def test_unreachable_ignores_loops_that_break_and_code_that_does_not_parse():
    assert unreachable("def f():\n    while True:\n        break\n    return 1\n") == []
    assert unreachable("def f():\n    for i in range(3):\n        continue\n        i += 1\n") == [4]
    assert unreachable("def f(:\n") == []
