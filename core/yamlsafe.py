"""The one YAML loader for outside input (service specs, route files, the config file): PyYAML's safe
loader with the document's size, nesting and alias expansion bounded, and precise errors.

Why: YAML aliases let a 418-byte document stand for millions of nodes (7 levels of 9 aliases is 9^7);
PyYAML builds the small graph quickly, but everything that walks the result (validation, dumping,
duplicate-key checks) pays for the expanded tree. `compose()` measures the expanded size of every
node over the *distinct* node graph (linear in the document, memoised per node) before anything else
walks it, and refuses past the limits, naming the limit and the line where it was passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

# The pure-Python loader, not libyaml's (10x faster): its messages say what was expected and what was
# found ("expected ',' or ']', but got '<stream end>'"), and documents here are bounded and parsed off
# the loop, so speed matters less than the message a person reads.
_Loader: Any = yaml.SafeLoader


@dataclass(frozen=True, slots=True)
class YamlLimits:
    """Bounds on one document. Units are in the names; every limit is inclusive."""

    max_bytes: int = 1024 * 1024  # the raw text, UTF-8
    max_nodes: int = 100_000  # scalars + sequences + mappings, each alias counted as what it repeats
    max_expanded_bytes: int = 4 * 1024 * 1024  # scalar text after alias expansion
    max_depth: int = 64  # nesting of sequences and mappings


DEFAULT_LIMITS = YamlLimits()


class YamlRefused(ValueError):
    """The text is not YAML we accept: a syntax error or a passed limit. `line` is 1-based or None."""

    def __init__(
        self, problem: str, line: int | None = None, column: int | None = None, limit: str | None = None
    ) -> None:
        super().__init__(problem if line is None else f"line {line}: {problem}")
        self.problem = problem
        self.line = line
        self.column = column
        self.limit = limit  # the YamlLimits field that was passed, when one was

    def __reduce__(self) -> tuple[Any, ...]:  # crosses process pools intact
        return (YamlRefused, (self.problem, self.line, self.column, self.limit))


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def check_expansion(root: yaml.Node, limits: YamlLimits = DEFAULT_LIMITS) -> tuple[int, int]:
    """(expanded node count, expanded scalar bytes) of `root`; `YamlRefused` past a limit or on a
    recursive alias. Iterative (no Python recursion) and linear in the number of distinct nodes."""
    done: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, bytes) of its expanded subtree
    on_path: set[int] = set()
    # (node, depth, children-pushed?) — a post-order walk with an explicit stack
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, expanded = stack.pop()
        key = id(node)
        if isinstance(node, yaml.ScalarNode):
            done[key] = (1, len(node.value))
            continue
        children: list[yaml.Node]
        if isinstance(node, yaml.MappingNode):
            kind, children = "mapping", [n for pair in node.value for n in pair]
        else:
            kind, children = "sequence", list(node.value)
        if not expanded:
            if key in done:
                continue
            if depth > limits.max_depth:
                raise YamlRefused(
                    f"the document nests deeper than {limits.max_depth} levels here "
                    f"(limit max_depth={limits.max_depth})",
                    _line(node),
                    limit="max_depth",
                )
            on_path.add(key)
            stack.append((node, depth, True))
            for child in children:
                ck = id(child)
                if ck in on_path:
                    raise YamlRefused(
                        "an alias refers to a node that contains it (a recursive alias); "
                        "recursive documents are not accepted",
                        _line(node),
                        limit="recursion",
                    )
                if ck not in done:
                    stack.append((child, depth + 1, False))
            continue
        on_path.discard(key)
        nodes, size = 1, 0
        for child in children:
            n, b = done[id(child)]
            nodes += n
            size += b
        if nodes > limits.max_nodes:
            raise YamlRefused(
                f"the {kind} starting here expands to {nodes} nodes through aliases (*name), past the "
                f"limit of {limits.max_nodes} (max_nodes); repeat less, or write the data out",
                _line(node),
                limit="max_nodes",
            )
        if size > limits.max_expanded_bytes:
            raise YamlRefused(
                f"the {kind} starting here expands to {size} bytes of text through aliases (*name), past "
                f"the limit of {limits.max_expanded_bytes} bytes (max_expanded_bytes)",
                _line(node),
                limit="max_expanded_bytes",
            )
        done[key] = (nodes, size)
    nodes, size = done[id(root)]
    if isinstance(root, yaml.ScalarNode) and size > limits.max_expanded_bytes:  # pragma: no cover - max_bytes
        raise YamlRefused("the document is too large", 1, limit="max_expanded_bytes")
    return nodes, size


def _syntax_error(e: yaml.YAMLError) -> YamlRefused:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    context = getattr(e, "context", None)
    if context and problem:
        problem = f"{problem} ({context})"
    return YamlRefused(f"invalid YAML: {problem}", mark.line + 1 if mark else None, mark.column + 1 if mark else None)


def _check_size(text: str, limits: YamlLimits) -> None:
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_bytes:
        raise YamlRefused(
            f"the document is {size} bytes; the limit is {limits.max_bytes} bytes (max_bytes)", limit="max_bytes"
        )


def compose(text: str, limits: YamlLimits = DEFAULT_LIMITS) -> yaml.Node | None:
    """The node graph of one YAML document (None when empty), checked against `limits`.

    Raises `YamlRefused` for a syntax error (with its line and column), more than one document, or a
    passed limit. Node marks give 1-based lines as `node.start_mark.line + 1`."""
    _check_size(text, limits)
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as e:
        raise _syntax_error(e) from None
    except RecursionError:
        raise YamlRefused(
            f"the document nests too deeply (limit max_depth={limits.max_depth})", limit="max_depth"
        ) from None
    finally:
        loader.dispose()
    if root is not None:
        check_expansion(root, limits)
    return root


def construct(root: yaml.Node | None) -> Any:
    """The Python value of a node graph `compose()` accepted (aliases become shared objects)."""
    if root is None:
        return None
    loader = _Loader("")
    try:
        return loader.construct_document(root)
    except yaml.YAMLError as e:  # composed but not constructible (e.g. a bad !!timestamp or tag)
        raise _syntax_error(e) from None
    finally:
        loader.dispose()


def load(text: str, limits: YamlLimits = DEFAULT_LIMITS) -> Any:
    """`yaml.safe_load` with `limits`: the value of one document, or `YamlRefused`."""
    return construct(compose(text, limits))
