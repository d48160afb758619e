"""The one exception type for user mistakes.

Raise `InputError` for anything the user can fix (a bad file, a bad config value):
the CLI prints its message without a traceback and exits with status 2.
Programming errors stay ordinary exceptions and keep their tracebacks.
"""

from __future__ import annotations


class InputError(Exception):
    """A user-fixable problem with an input file or a config value.

    The message should name the file (and line or field) and say what was expected.
    """


def where(path: object, line: int | None = None, field: str | None = None) -> str:
    """Format a location prefix such as ``genes.tsv, line 3, field EXON_END``."""
    parts = [str(path)]
    if line is not None:
        parts.append(f"line {line}")
    if field is not None:
        parts.append(f"field {field}")
    return ", ".join(parts)


def yaml_problem(err: Exception) -> str:
    """One line from a PyYAML error, such as ``line 2, column 6: mapping values are not allowed here``.

    PyYAML's own text spans several lines, quotes the source with a caret and names a string read from a file
    ``<unicode string>``; an InputError is one line that names the file.
    """
    mark = getattr(err, "problem_mark", None)
    parts = [p for p in (getattr(err, "context", None), getattr(err, "problem", None)) if p]
    problem = ", ".join(parts) if parts else " ".join(str(err).split())
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem
