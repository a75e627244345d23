"""Which of Segue's modules run compiled (mypyc C extensions, see ``setup.py``).

A compiled module is a ``<name>.cpython-*.so`` beside its ``<name>.py`` and takes precedence
over it on import. ``make native`` builds them in place; a source edited after its build
leaves a stale extension that would still be imported, which ``stale()`` finds (the test
suite refuses to run with one)."""

from __future__ import annotations

import importlib.machinery
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("segue", "flows", "operators", "models", "state")


def _extensions(root: Path) -> list[tuple[Path, Path]]:
    """(extension, its source) for every compiled module of the tree at ``root``."""
    # Longest first: ".cpython-311-x86_64-linux-gnu.so" before the bare ".so".
    suffixes = sorted(importlib.machinery.EXTENSION_SUFFIXES, key=len, reverse=True)
    out = []
    for pkg in PACKAGES:
        for ext in sorted((root / pkg).rglob("*.so")):
            suffix = next((s for s in suffixes if ext.name.endswith(s)), None)
            if suffix is not None:
                out.append((ext, ext.with_name(ext.name[: -len(suffix)] + ".py")))
    return out


def compiled_sources(root: Path = ROOT) -> list[str]:
    """The sources of the compiled modules, relative to ``root`` (the build's shared
    library has none)."""
    return [str(src.relative_to(root)) for _, src in _extensions(root) if src.exists()]


def compiled(root: Path = ROOT) -> list[str]:
    """Dotted names of the modules built as extensions."""
    return [".".join(Path(src).with_suffix("").parts).removesuffix(".__init__")
            for src in compiled_sources(root)]


def summary() -> str:
    """One line for ``segue --version``: compiled or pure Python."""
    n = len(compiled())
    return f"hot path compiled: {n} modules" if n else "pure Python"


def stale(root: Path = ROOT) -> list[str]:
    """Sources edited after the compiled code was built (``make native`` rebuilds it). The
    code of every compiled module is in one shared library; each module's own extension is
    a small shim that a rebuild may leave as it was."""
    exts = _extensions(root)
    if not exts:
        return []
    libs = [ext for ext, _ in exts if "__mypyc" in ext.name] or [ext for ext, _ in exts]
    built = max(ext.stat().st_mtime for ext in libs)
    return [str(src.relative_to(root)) for _, src in exts
            if src.exists() and src.stat().st_mtime > built]
