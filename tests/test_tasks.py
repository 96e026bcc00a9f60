import json

import pytest

from iterkd.errors import UserError
from iterkd.tasks import load_humaneval, load_mbpp, load_task_file, load_tasks
from iterkd.tasks.testsplit import docstring_examples, split_check_function


def test_humaneval_loads_164_tasks_with_split_tests():
    tasks = load_humaneval()
    assert len(tasks) == 164
    assert tasks[0].task_id == "HumanEval/0" and tasks[-1].task_id == "HumanEval/163"
    # check()'s asserts become individual tests: HumanEval/0 has 7 asserts
    assert len(tasks[0].tests) == 7
    assert all(t.startswith("assert candidate(") for t in tasks[0].tests)
    assert "candidate = has_close_elements" in tasks[0].setup
    assert sum(len(t.tests) for t in tasks) > 1000


def test_check_with_loops_and_prelude_is_grouped():
    source = (
        "METADATA = {}\n\ndef check(candidate):\n    import random\n\n    assert candidate(0, 1) == 1\n"
        "    for i in range(3):\n        x = random.randint(0, 9)\n        assert candidate(x, 1) == x + 1\n"
        "    y = 2\n"
    )
    setup, tests = split_check_function(source, "add")
    assert setup == "METADATA = {}\ncandidate = add\n"
    assert tests == [
        "import random\n\nassert candidate(0, 1) == 1",
        "for i in range(3):\n    x = random.randint(0, 9)\n    assert candidate(x, 1) == x + 1\ny = 2",
    ]


def test_docstring_examples_become_seen_tests():
    prompt = 'def add(x, y):\n    """Add.\n    >>> add(2, 3)\n    5\n    >>> add(5, 7)\n    12\n    """\n'
    assert docstring_examples(prompt, "add") == ["assert add(2, 3) == 5", "assert add(5, 7) == 12"]
    arrow = 'def f(s):\n    """\n    f("ab") ➞ 2\n    f("") == 0\n    """\n'
    assert docstring_examples(arrow, "f") == ['assert f("ab") == 2', 'assert f("") == 0']


def test_mbpp_splits_and_entry_points():
    assert len(load_mbpp("test")) == 500
    assert len(load_mbpp("validation")) == 90
    assert len(load_mbpp("train")) == 374
    assert len(load_mbpp("prompt")) == 10
    first = load_mbpp("test")[0]
    assert first.task_id == "Mbpp/11" and first.entry_point == "remove_Occ"
    assert first.seen_tests == first.tests[:1] and len(first.tests) == 3
    assert all(t.entry_point for t in load_mbpp("all"))
    with pytest.raises(UserError, match="unknown MBPP split"):
        load_mbpp("dev")


def test_task_file_round_trip_and_errors(tmp_path):
    good = {"task_id": "t/1", "prompt": "Add one.", "entry_point": "inc", "tests": ["assert inc(1) == 2"]}
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps(good) + "\n\n")
    [task] = load_tasks(str(path))
    assert task.entry_point == "inc" and task.seen_tests == [] and task.benchmark == "custom"

    path.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(UserError, match=r"tasks.jsonl:2: not valid JSON"):
        load_task_file(path)
    path.write_text(json.dumps({**good, "tests": "assert 1"}) + "\n")
    with pytest.raises(UserError, match=r":1: field 'tests' must be a list"):
        load_task_file(path)
    path.write_text(json.dumps({k: v for k, v in good.items() if k != "entry_point"}) + "\n")
    with pytest.raises(UserError, match="missing field 'entry_point'"):
        load_task_file(path)
    path.write_text((json.dumps(good) + "\n") * 2)
    with pytest.raises(UserError, match="duplicate task_id"):
        load_task_file(path)
    with pytest.raises(UserError, match="no such file"):
        load_task_file(tmp_path / "missing.jsonl")
    with pytest.raises(UserError, match="unknown benchmark"):
        load_tasks("apps")


def test_pin_settings_refuses_other_settings(tmp_path):
    from iterkd.errors import UserError
    from iterkd.io import pin_settings

    path = tmp_path / "run" / "settings.json"
    pin_settings(path, {"model": "m", "stop": ("a",)}, "run", "use another --out")
    pin_settings(path, {"model": "m", "stop": ["a"]}, "run", "use another --out")  # a tuple reads back as a list
    with pytest.raises(
        UserError, match=r"run holds outputs made with other settings \(model: 'm' -> 'n'\); use another --out"
    ):
        pin_settings(path, {"model": "n", "stop": ["a"]}, "run", "use another --out")


def test_eval_runs_from_before_top_k_resume_greedy_and_name_the_change_when_sampled(tmp_path):
    """`iterkd eval` pins top_k since issue 20: an older run directory (no top_k recorded, it sampled with all
    tokens) resumes when greedy (top_k is pinned as 0 then) and is refused, naming top_k, when sampled with the
    new default 50."""
    import json

    from iterkd.errors import UserError
    from iterkd.evaluate.generate import GenerationSettings, _check_settings
    from iterkd.evaluate.run import EvalConfig

    def settings(temperature: float, top_k: int) -> GenerationSettings:
        return GenerationSettings("m", "humaneval", None, 1, temperature, 0.95, 512, 0, "auto", "v1", top_k)

    old = {k: v for k, v in settings(0.0, 0).__dict__.items() if k != "top_k"}
    (tmp_path / "generation_config.json").write_text(json.dumps(old))
    _check_settings(tmp_path, settings(0.0, 0))  # greedy resumes
    (tmp_path / "generation_config.json").write_text(json.dumps({**old, "temperature": 0.2}))
    with pytest.raises(UserError, match=r"top_k: 0 -> 50"):
        _check_settings(tmp_path, settings(0.2, 50))
    _check_settings(tmp_path, settings(0.2, 0))  # --top-k 0 continues it
    assert EvalConfig(model="m", benchmark="humaneval").top_k == 50
