"""persistence.diff: the JSON path changes and the folded line diff."""

from __future__ import annotations

import pickle

from persistence import diff


def test_identical_values_have_no_changes() -> None:
    assert diff.changes({"a": [1, {"b": None}]}, {"a": [1, {"b": None}]}) == ([], False)


def test_added_removed_and_changed_paths() -> None:
    old = {"a": 1, "gone": True, "nested": {"x": "old"}}
    new = {"a": 2, "nested": {"x": "old", "y": [1]}, "new": None}
    changes, truncated = diff.changes(old, new)
    assert not truncated
    assert [(c.path, c.kind) for c in changes] == [
        ("$.a", "changed"),
        ("$.gone", "removed"),
        ("$.nested.y", "added"),
        ("$.new", "added"),
    ]
    assert changes[0].old == 1 and changes[0].new == 2
    assert changes[1].new is diff.MISSING and changes[2].old is diff.MISSING


def test_arrays_compare_index_by_index() -> None:
    changes, _ = diff.changes({"l": [1, 2, 3]}, {"l": [1, 5]})
    assert [(c.path, c.kind) for c in changes] == [("$.l[1]", "changed"), ("$.l[2]", "removed")]


def test_json_types_are_distinguished() -> None:
    changes, _ = diff.changes({"a": 1, "b": 1, "c": 0}, {"a": 1.0, "b": True, "c": False})
    assert [c.path for c in changes] == ["$.a", "$.b", "$.c"]


def test_type_change_between_container_and_scalar() -> None:
    changes, _ = diff.changes({"a": {"x": 1}}, {"a": [1]})
    assert [(c.path, c.kind) for c in changes] == [("$.a", "changed")]


def test_odd_keys_are_quoted_in_paths() -> None:
    changes, _ = diff.changes({}, {"with space": 1, "x.y": 2, "ok_1": 3, '"q"': 4})
    assert {c.path for c in changes} == {'$["with space"]', '$["x.y"]', "$.ok_1", '$["\\"q\\""]'}


def test_changes_are_capped_and_say_so() -> None:
    old = {f"k{i}": i for i in range(50)}
    changes, truncated = diff.changes(old, {}, limit=10)
    assert len(changes) == 10 and truncated


def test_line_diff_folds_long_unchanged_runs() -> None:
    old = {f"k{i:03}": i for i in range(100)}
    new = {**old, "k050": "changed"}
    result = diff.line_diff(diff.pretty(old), diff.pretty(new), context=3)
    kinds = [r.kind for r in result.rows]
    assert kinds.count("replace") == 1
    assert kinds.count("fold") == 2
    folded = sum(r.folded for r in result.rows)
    shown = sum(1 for r in result.rows if r.kind != "fold")
    assert folded + shown == 102  # 100 keys + the braces
    changed = next(r for r in result.rows if r.kind == "replace")
    assert '"k050": 50' in changed.left and '"k050": "changed"' in changed.right


def test_line_diff_inserts_and_deletes() -> None:
    result = diff.line_diff("a\nb\nc", "a\nc\nd")
    assert [(r.kind, r.left, r.right) for r in result.rows] == [
        ("equal", "a", "a"),
        ("delete", "b", ""),
        ("equal", "c", "c"),
        ("insert", "", "d"),
    ]


def test_line_diff_is_capped() -> None:
    old = "\n".join(str(i) for i in range(5000))
    new = "\n".join(str(i) + "x" for i in range(5000))
    result = diff.line_diff(old, new, max_rows=100)
    assert result.truncated and len(result.rows) == 100


def test_long_lines_are_cut_and_say_by_how_much() -> None:
    old = diff.pretty({"a": "x" * 5000, "b": 1})
    new = diff.pretty({"a": "y" * 5000, "b": 1})
    result = diff.line_diff(old, new)
    (changed,) = [r for r in result.rows if r.kind == "replace"]
    (line,) = [s for s in old.splitlines() if s.startswith('  "a"')]
    more = len(line) - diff.MAX_LINE
    assert more > 2000 and changed.left == f"{line[: diff.MAX_LINE]} … ({more:,} more characters)"
    assert changed.right.startswith('  "a": "yyy') and len(changed.right) < diff.MAX_LINE + 40
    assert '  "b": 1' in [r.left for r in result.rows]  # short lines are kept whole


def test_huge_texts_skip_the_line_diff() -> None:
    big = "\n".join("x" for _ in range(diff.MAX_LINES + 1))
    result = diff.line_diff(big, "x")
    assert result.too_large and result.rows == []


def test_pretty_is_sorted_and_indented() -> None:
    assert diff.pretty({"b": 1, "a": [1]}) == '{\n  "a": [\n    1\n  ],\n  "b": 1\n}'


def test_preview_cuts_long_values() -> None:
    assert diff.preview({"a": 1}) == '{"a":1}'
    assert diff.preview("x" * 500, limit=20).endswith("…")
    assert diff.preview(diff.MISSING) == ""


def test_results_pickle_for_the_cache() -> None:
    changes, _ = diff.changes({"a": 1}, {"b": 2})
    again = pickle.loads(pickle.dumps(changes))
    assert again == changes and again[0].new is diff.MISSING


def test_opcodes_rebuild_the_new_text() -> None:
    import random

    rng = random.Random(3)
    for _ in range(200):
        a = [rng.choice("abcdefg") + str(rng.randint(0, 30)) for _ in range(rng.randint(0, 60))]
        b = list(a)
        for _ in range(rng.randint(0, 10)):
            at = rng.randint(0, len(b))
            if b and rng.random() < 0.5:
                del b[min(at, len(b) - 1)]
            else:
                b.insert(at, rng.choice("xyz") + str(rng.randint(0, 5)))
        rebuilt: list[str] = []
        last_i = last_j = 0
        for tag, i1, i2, j1, j2 in diff.opcodes(a, b):
            assert (i1, j1) == (last_i, last_j)
            rebuilt.extend(a[i1:i2] if tag == "equal" else b[j1:j2])
            if tag == "equal":
                assert a[i1:i2] == b[j1:j2]
            last_i, last_j = i2, j2
        assert rebuilt == b and (last_i, last_j) == (len(a), len(b))


def test_line_diff_of_a_megabyte_is_quick() -> None:
    import time

    old = {f"k{i:05}": "v" * 60 for i in range(12000)}
    new = {k: ("w" * 60 if n % 5 == 0 else v) for n, (k, v) in enumerate(old.items())}
    start = time.perf_counter()
    result = diff.line_diff(diff.pretty(old), diff.pretty(new))
    assert time.perf_counter() - start < 2
    assert result.truncated and result.rows[0].kind == "equal"
