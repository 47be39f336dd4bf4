"""One validator for every user-supplied name that becomes part of a path or of a name that
other tools turn into paths (model names, experiment names, preset names, run folder names).

A safe name is a slug: 1-100 characters of ASCII letters, digits, ``.``, ``_`` and ``-``,
starting with a letter or digit (so never ``.``/``..``, a hidden file or an option). Anything
else -- a ``/``, a ``\\``, ``..``, a NUL, a space, a non-ASCII letter -- is refused with one
``ConfigError`` naming the argument, before anything is written. Refusing is deliberate: a
name rewritten behind the user's back (``../x`` -> ``x``) would make two different arguments
land in the same folder.
"""

from __future__ import annotations

import re

from impactflow.errors import ConfigError

MAX_NAME_LENGTH = 100
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
UNSAFE_NAME = (
    "{what} {value!r}: not a safe name; use 1-{max} ASCII letters, digits, '.', '_' or '-', "
    "starting with a letter or digit (it becomes part of a file or folder name)"
)


def is_safe_name(value: object) -> bool:
    """Whether ``value`` is a safe name (see the module docstring)."""
    return (
        isinstance(value, str)
        and len(value) <= MAX_NAME_LENGTH
        and _SAFE.fullmatch(value) is not None
        and ".." not in value
    )


def safe_name(value: object, what: str) -> str:
    """``value`` unchanged when it is a safe name; ``ConfigError`` naming ``what`` (e.g.
    ``--model-name``) otherwise."""
    if not is_safe_name(value):
        raise ConfigError(UNSAFE_NAME.format(what=what, value=value, max=MAX_NAME_LENGTH))
    return value  # type: ignore[return-value]
