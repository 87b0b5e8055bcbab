"""The bounded YAML loader: alias bombs, size, depth and recursion refused with the limit and line named;
ordinary documents (aliases included) load exactly as `yaml.safe_load` loads them."""

from __future__ import annotations

import time

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from core import yamlsafe
from core.yamlsafe import YamlLimits, YamlRefused


def bomb(levels: int = 7, fan: int = 9) -> str:
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * fan) + "]")
    return "\n".join(lines) + "\n"


def test_the_alias_bomb_is_refused_at_once_naming_the_limit_and_line():
    t0 = time.thread_time()  # CPU time: a loaded runner's scheduling is not the point; expanding 9^7 nodes is
    with pytest.raises(YamlRefused) as e:
        yamlsafe.load(bomb())
    assert time.thread_time() - t0 < 0.5
    assert e.value.limit == "max_nodes" and e.value.line == 6  # a5: 125,479 nodes, past 100,000
    assert "past the limit of 100000 (max_nodes)" in str(e.value) and str(e.value).startswith("line 6:")
    with pytest.raises(YamlRefused, match="line 4: the sequence starting here expands to 1549 nodes"):
        yamlsafe.load(bomb(), YamlLimits(max_nodes=1000))


def test_expanded_size_counts_each_alias_as_what_it_repeats():
    doc = "x: &x [1, 2, 3]\ny: [*x, *x]\nz: {k: *x}\n"
    root = yamlsafe.compose(doc)
    assert root is not None
    nodes, size = yamlsafe.check_expansion(root)

    def count(v):  # the expanded tree, as a consumer walking the loaded value sees it
        if isinstance(v, dict):
            return 1 + sum(1 + count(x) for x in v.values())
        if isinstance(v, list):
            return 1 + sum(count(x) for x in v)
        return 1

    assert nodes == count(yaml.safe_load(doc)) == 23
    assert size == len("xyz") + 4 * 3 + len("k")


def test_a_big_text_repeated_by_aliases_is_refused():
    doc = "a: &a " + "x" * 1000 + "\nb: [" + ", ".join(["*a"] * 50) + "]\n"
    with pytest.raises(YamlRefused) as e:
        yamlsafe.load(doc, YamlLimits(max_expanded_bytes=20_000))
    assert e.value.limit == "max_expanded_bytes" and e.value.line == 2
    assert yamlsafe.load(doc)["b"][49] == "x" * 1000  # within the default limit


def test_size_depth_and_recursion_limits():
    with pytest.raises(YamlRefused, match=r"the document is 2000001 bytes; the limit is 2000000 bytes \(max_bytes\)"):
        yamlsafe.load("#" * 2_000_001, YamlLimits(max_bytes=2_000_000))
    with pytest.raises(YamlRefused, match="max_bytes"):
        yamlsafe.load("é" * 600_000)  # counted in UTF-8 bytes
    with pytest.raises(YamlRefused) as e:
        yamlsafe.load("a:\n  b: " + "[" * 70 + "]" * 70)
    assert e.value.limit == "max_depth" and e.value.line == 2
    assert yamlsafe.load("[" * 60 + "]" * 60) is not None  # 60 levels are fine
    with pytest.raises(YamlRefused) as e:
        yamlsafe.load("[" * 5000 + "]" * 5000)
    assert e.value.limit == "max_depth"
    with pytest.raises(YamlRefused, match="recursive alias") as e:
        yamlsafe.load("a: &a\n  b:\n    - *a\n")
    assert e.value.line == 3


def test_syntax_errors_keep_line_and_column():
    with pytest.raises(YamlRefused) as e:
        yamlsafe.load("a: 1\nb: [x\n")
    assert e.value.line == 3 and e.value.limit is None
    assert "invalid YAML: expected ',' or ']'" in e.value.problem
    with pytest.raises(YamlRefused, match="expected a single document"):
        yamlsafe.load("a: 1\n---\nb: 2\n")
    with pytest.raises(YamlRefused, match="could not determine a constructor"):
        yamlsafe.load("a: !!python/object:os.system x\n")
    assert yamlsafe.load("") is None and yamlsafe.load("# only a comment\n") is None


def test_refusals_survive_a_process_boundary():
    import pickle

    e = YamlRefused("too big", 3, 4, "max_nodes")
    back = pickle.loads(pickle.dumps(e))
    assert (back.problem, back.line, back.column, back.limit, str(back)) == ("too big", 3, 4, "max_nodes", str(e))


_scalars = st.one_of(
    st.integers(-(10**6), 10**6),
    st.booleans(),
    st.none(),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text("abcxyz", min_size=1, max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(_values)
def test_ordinary_documents_load_as_safe_load_loads_them(value):
    text = yaml.safe_dump(value)
    assert yamlsafe.load(text) == yaml.safe_load(text)
