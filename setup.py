"""Segue's build: the hot path's modules (``native-modules.txt``) compiled with mypyc.

Everything else is in ``pyproject.toml``. A compiled module is a C extension beside its
``.py`` file and takes precedence over it; the Python source stays the reference and the
fallback:
- ``SEGUE_PURE=1`` builds no extensions (pure Python, the same behaviour);
- without mypyc or a C compiler the build warns and goes on in pure Python;
- ``SEGUE_NATIVE=require`` makes any failure fatal (``make native``, which rebuilds them in
  place after a change; ``make test`` and ``make demo`` call it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
REQUIRE = os.environ.get("SEGUE_NATIVE") == "require"
# mypy's options for the build: installed packages are not analysed (their types become
# Any): a build takes about 45 s here instead of 6 minutes.
MYPY_ARGS = ["--no-site-packages", "--ignore-missing-imports", "--follow-imports=silent"]


def native_modules() -> list[str]:
    lines = (HERE / "native-modules.txt").read_text().splitlines()
    return [x.strip() for x in lines if x.strip() and not x.lstrip().startswith("#")]


class OptionalBuildExt(build_ext):
    """Compile when possible; on failure remove what was built and stay pure Python (a
    partial set would load two copies of a module: compiled inside the group, pure
    outside it)."""

    def run(self) -> None:
        try:
            super().run()
            if self.inplace:
                # An edit that changes no generated code (a comment) rebuilds nothing: the
                # extensions' times still say they are as new as their sources (see
                # segue.native.stale).
                for ext in self.extensions:
                    Path(self.get_ext_fullpath(ext.name)).touch()
        except Exception as e:  # compiler missing or failing: the pure modules still work
            if REQUIRE:
                raise
            for out in self.get_outputs():
                Path(out).unlink(missing_ok=True)
            print(f"segue: compiling the hot path failed ({e}); installed as pure Python",
                  file=sys.stderr)


def ext_modules() -> list:
    if os.environ.get("SEGUE_PURE") == "1":
        return []
    cwd = os.getcwd()
    os.chdir(HERE)  # mypyc names modules by their paths
    try:
        from mypyc.build import mypycify

        # The modules share one library, kept inside the package (not at the top level).
        return mypycify([*MYPY_ARGS, *native_modules()], opt_level="3", debug_level="0",
                        group_name="segue._compiled")
    except (ImportError, SystemExit) as e:  # no mypyc, or a type error it reported
        if REQUIRE:
            raise
        print(f"segue: not compiling the hot path ({e!r}); installed as pure Python",
              file=sys.stderr)
        return []
    finally:
        os.chdir(cwd)


setup(ext_modules=ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
