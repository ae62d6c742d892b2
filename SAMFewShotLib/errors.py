"""The library's own exception types.

:class:`InputError` is anything the user can fix (a missing file, a bad option value, a label that
is not in the image): the command line reports it in one line and exits 2. It subclasses
``ValueError`` so that code catching ``ValueError`` keeps working. Internal invariants stay plain
``ValueError`` / ``RuntimeError``: a bug, reported as such.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input the user can fix; the message names the value and what is expected."""
