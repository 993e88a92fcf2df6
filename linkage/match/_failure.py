"""A backend failure described in one sentence that names its cause and no record value.

Spark and DuckDB messages can quote data (a value that failed a cast, a key in a
join), so only structure survives: exception class names, Spark's error class tag
(``[TABLE_OR_VIEW_ALREADY_EXISTS]``) and the first line of the deepest Java message
with quoted literals, words holding digits, long words and anything after a ``: ``
removed (Java's ``Reason: value`` convention). What is left reads like
``Py4JJavaError from org.apache.spark.SparkException: Checkpoint directory has not been
set in the SparkContext``.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["describe_failure", "sanitise_message"]

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`|\[[^\]]*\]|\{[^}]*\}|\([^)]*\)")
_ERROR_CLASS = re.compile(r"^\s*\[([A-Z][A-Z0-9_.]*)\]")
_WORD = re.compile(r"[A-Za-z][A-Za-z-]{0,23}")
_MAX = 160


def sanitise_message(message: str) -> str:
    """The first line of ``message`` with everything that could be a value removed.

    Kept: Spark's error class tag, and plain words (letters and hyphens, at most 24
    characters, no digits) up to the first ``: `` or ``=``; quoted, bracketed or
    parenthesised text and any word holding a digit, an underscore or another symbol
    is dropped, so a token, a date, an id or a quoted value cannot survive.
    """
    line = (message.strip().splitlines() or [""])[0]
    tag = _ERROR_CLASS.match(line)
    if tag:
        line = line[tag.end() :]
    line = _QUOTED.sub(" ", line)
    line = re.split(r":\s|=", line, maxsplit=1)[0]
    words = [w for w in line.split() if _WORD.fullmatch(w.rstrip(".,;"))]
    text = " ".join(w.rstrip(",;") for w in words)[:_MAX].rstrip(" .")
    if tag:
        text = f"[{tag.group(1)}] {text}".rstrip()
    return text


def _java_class(name: str) -> str:
    """A Java or Python class name, kept only if it looks like one (dots, letters)."""
    return name if re.fullmatch(r"[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*", name) else "?"


def _java_root_cause(exc: BaseException) -> tuple[str, str] | None:
    """(class, message) of the deepest cause behind a Py4J error, if the JVM answers."""
    java = getattr(exc, "java_exception", None)
    if java is None:
        return None
    try:
        cause: Any = java
        for _ in range(20):  # a cycle guard: Java causes can be long chains
            nxt = cause.getCause()
            if nxt is None:
                break
            cause = nxt
        return str(cause.getClass().getName()), str(cause.getMessage() or "")
    except Exception:  # the JVM may be gone; the Python side is all we know then
        return None


def _python_error_class(exc: BaseException) -> str | None:
    """Spark's error class of a PySpark exception (``getCondition`` in Spark 4)."""
    for getter in ("getCondition", "getErrorClass"):
        method = getattr(exc, getter, None)
        if callable(method):
            try:
                value = method()
            except Exception:  # a half-built exception; its class name still helps
                value = None
            if isinstance(value, str) and re.fullmatch(r"[A-Z][A-Z0-9_.]*", value):
                return value
    return None


def describe_failure(exc: BaseException) -> str:
    """``ExceptionClass`` plus the sanitised first line of the underlying cause.

    For a Py4J error the deepest Java cause is named (that is where Spark says what
    went wrong); for a PySpark error its error class; otherwise the Python exception's
    own first line, sanitised the same way.
    """
    name = type(exc).__name__
    java = _java_root_cause(exc)
    if java is not None:
        java_class, java_message = java
        detail = sanitise_message(java_message)
        return f"{name} from {_java_class(java_class)}" + (f": {detail}" if detail else "")
    error_class = _python_error_class(exc)
    detail = sanitise_message(str(exc))
    if error_class and not detail.startswith(f"[{error_class}]"):
        detail = f"[{error_class}] {detail}".rstrip()
    return f"{name}: {detail}" if detail else name
