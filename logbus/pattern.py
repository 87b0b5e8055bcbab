"""User-supplied regular expressions, compiled with RE2: matching time linear in the text, whatever the
pattern, and the GIL released while RE2 matches. Python's `re` backtracks (`(a|aa)*b` is exponential
in the line's length) and holds the GIL throughout, so one search could stall every site.

RE2 syntax is Python's minus the features that need backtracking: backreferences, lookaround, atomic
groups, possessive quantifiers, conditionals. A pattern using one is refused with an error naming it
and where it is. Compilation is bounded too: a pattern longer than `MAX_REGEX_CHARS` or whose program
passes `MAX_PROGRAM_BYTES` (say `\\p{Greek}{1000}`) is refused; compiling holds the GIL, and the bound
keeps the worst case to a few milliseconds.
"""

from __future__ import annotations

import re2
from re2 import _re2

MAX_REGEX_CHARS = 500
# RE2's memory budget per pattern (program and DFA cache). Measured: at the default 8 MiB, compiling
# `(\pL|\pN){300}` took 115 ms holding the GIL; at 1 MiB no pattern of ≤500 characters we tried took
# over ~6 ms (they fail as too large instead), and matching speed was the same (~750 MB/s).
MAX_PROGRAM_BYTES = 1 << 20
SYNTAX_URL = "https://github.com/google/re2/wiki/Syntax"

_UNANCHORED = _re2.RE2.Anchor.UNANCHORED

# (prefix after `(`, what it is) for group syntax RE2 refuses, longest prefixes first.
_GROUPS = (
    ("(?<=", "a lookbehind"),
    ("(?<!", "a negative lookbehind"),
    ("(?=", "a lookahead"),
    ("(?!", "a negative lookahead"),
    ("(?>", "an atomic group"),
    ("(?P=", "a named backreference"),
    ("(?(", "a conditional group"),
)


def unsupported(pattern: str) -> tuple[int, str, str] | None:
    """The first construct of Python's syntax that RE2 lacks: (index, the text, what it is), or None.
    A lexical scan (escapes and character classes skipped), used to explain a pattern RE2 refused."""
    i, n = 0, len(pattern)
    quantified = False  # the previous token was a quantifier: a `+` after it is possessive
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            e = pattern[i + 1]
            if e in "123456789":
                j = i + 2
                while j < n and pattern[j].isdigit():
                    j += 1
                return i, pattern[i:j], "a backreference"
            if e == "g" and pattern.startswith("<", i + 2):
                end = pattern.find(">", i)
                return i, pattern[i : end + 1 if end > 0 else n], "a backreference"
            if e == "Z":
                return i, "\\Z", "Python's end-of-text anchor (RE2 spells it \\z)"
            i, quantified = i + 2, False
            continue
        if c == "[":
            i, quantified = _class_end(pattern, i), False
            continue
        if c == "(":
            for prefix, what in _GROUPS:
                if pattern.startswith(prefix, i):
                    close = pattern.find(")", i)
                    text = pattern[i : close + 1] if prefix == "(?P=" and close > 0 else prefix
                    return i, text, what
            i, quantified = i + 1, False
            if pattern.startswith("?", i):
                i += 1  # `(?:`, `(?i)`, `(?P<name>`: the `?` is not a quantifier
            continue
        if c == "+" and quantified:
            return i - 1, pattern[i - 1 : i + 1], "a possessive quantifier"
        if c in "*+?":
            # `a*?` is lazy (RE2 has it); a `+` right after a quantifier is possessive
            quantified = not (c == "?" and quantified)
            i += 1
            continue
        if c == "{":
            close = pattern.find("}", i)
            body = pattern[i + 1 : close] if close > 0 else ""
            if body and all(ch.isdigit() or ch == "," for ch in body) and body[0] != ",":
                i, quantified = close + 1, True
                continue
        i, quantified = i + 1, False
    return None


def _class_end(pattern: str, i: int) -> int:
    """The index after the character class starting at `pattern[i] == "["`."""
    j = i + 1
    if pattern.startswith("^", j):
        j += 1
    if pattern.startswith("]", j):
        j += 1  # a `]` first in the class is a literal
    while j < len(pattern):
        if pattern[j] == "\\":
            j += 2
            continue
        if pattern.startswith("[:", j):  # [[:alpha:]]
            end = pattern.find(":]", j + 2)
            if end > 0:
                j = end + 2
                continue
        if pattern[j] == "]":
            return j + 1
        j += 1
    return j


class UserRegex:
    """A compiled user pattern over bytes (UTF-8 text): search spans only; groups are not captured."""

    __slots__ = ("_rx", "pattern")

    def __init__(self, pattern: str) -> None:
        """ValueError with a precise message when the pattern is too long, refused by RE2, or too large."""
        if len(pattern) > MAX_REGEX_CHARS:
            raise ValueError(f"regex is {len(pattern)} characters long; at most {MAX_REGEX_CHARS} are allowed")
        opts = re2.Options()
        opts.log_errors = False  # RE2 would print the user's pattern to stderr
        opts.max_mem = MAX_PROGRAM_BYTES
        opts.never_capture = True  # only the whole match's span is used: no submatch pass
        # A line's text holds no newline; without this, `[^x]*` could run across every later line of a
        # block searched whole (see logbus.search), making a scan quadratic in the block's lines.
        opts.never_nl = True
        rx = _re2.RE2(pattern.encode("utf-8", "surrogatepass"), opts)
        if not rx.ok():
            raise ValueError(explain(pattern, rx.error().decode("utf-8", "replace")))
        self._rx = rx
        self.pattern = pattern

    def search(self, text: bytes, pos: int = 0, endpos: int | None = None) -> tuple[int, int] | None:
        """(start, end) of the leftmost match in text[pos:endpos], or None."""
        end = len(text) if endpos is None else min(endpos, len(text))
        if pos > end:
            return None
        span = self._rx.Match(_UNANCHORED, text, pos, end)[0]
        return None if span[0] < 0 else span


def explain(pattern: str, error: str) -> str:
    """The message for a pattern RE2 refused with `error`."""
    found = unsupported(pattern)
    if found is not None:
        at, text, what = found
        return (
            f"regex {pattern!r} uses {what} ({text} at character {at + 1}), which RE2 syntax does not "
            f"support: patterns are matched in linear time, so backreferences and lookaround are not "
            f"available; rewrite it without, or search by keyword and regex together ({SYNTAX_URL})"
        )
    if "pattern too large" in error:
        return (
            f"regex {pattern!r} is too large once compiled (more than {MAX_PROGRAM_BYTES // 1024} KiB): "
            "use smaller repetition counts or narrower classes than \\pL"
        )
    return f"regex {pattern!r} is invalid: {error} (RE2 syntax, {SYNTAX_URL})"
