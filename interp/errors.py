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
