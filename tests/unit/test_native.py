"""``segue.native``: which modules run compiled, and a stale build found."""

from __future__ import annotations

import importlib.machinery
import os

from segue import native

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _tree(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "operators" / "policy").mkdir(parents=True)
    for src in ("state/keys.py", "operators/policy/__init__.py", "state/other.py"):
        (tmp_path / src).write_text("")
    for ext in ("state/keys", "operators/policy/__init__", "segue/_compiled__mypyc"):
        (tmp_path / ext).parent.mkdir(exist_ok=True)
        (tmp_path / (ext + SUFFIX)).write_bytes(b"")
    return tmp_path


def test_compiled_modules_are_named_by_their_extensions(tmp_path):
    root = _tree(tmp_path)
    # The shared library has no source of its own; a source without an extension is pure.
    assert sorted(native.compiled(root)) == ["operators.policy", "state.keys"]
    assert sorted(native.compiled_sources(root)) == ["operators/policy/__init__.py",
                                                     "state/keys.py"]


def test_a_source_edited_after_the_build_is_stale(tmp_path):
    root = _tree(tmp_path)
    built = os.stat(root / ("segue/_compiled__mypyc" + SUFFIX)).st_mtime
    for ext in root.rglob("*" + SUFFIX):
        os.utime(ext, (built, built))
    for src in root.rglob("*.py"):
        os.utime(src, (built - 10, built - 10))
    assert native.stale(root) == []
    os.utime(root / "state/keys.py", (built + 10, built + 10))
    # Only the shared library's time counts: a rebuild may leave a module's shim as it was.
    os.utime(root / ("state/keys" + SUFFIX), (built + 20, built + 20))
    os.utime(root / ("segue/_compiled__mypyc" + SUFFIX), (built - 5, built - 5))
    os.utime(root / ("operators/policy/__init__" + SUFFIX), (built - 5, built - 5))
    assert native.stale(root) == ["state/keys.py"]
