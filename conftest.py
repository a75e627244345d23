"""Collection for the whole tree (the doctests of ``segue``, ``flows``, ``operators``,
``models`` and ``state``, and ``tests/``).

Modules compiled by ``make native`` are imported as extensions, so pytest cannot collect
their doctests from the ``.py`` file (it would import a second copy);
``tests/unit/test_native_doctests.py`` runs those doctests on the compiled modules instead.
An extension older than its source would test code that is no longer there: refused."""

from __future__ import annotations

import pytest

from segue import native

collect_ignore = native.compiled_sources()


def pytest_sessionstart(session: pytest.Session) -> None:
    old = native.stale()
    if old:
        raise pytest.UsageError(
            f"compiled modules older than their source: {', '.join(old)}; "
            "run `make native` to rebuild them (or `make pure` to remove them)")
