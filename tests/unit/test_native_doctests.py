"""The doctests of compiled modules, run against the compiled code.

A compiled module keeps no docstrings, and the root ``conftest.py`` leaves its source out of
pytest's own doctest collection (that would import a second, pure copy). So the examples are
read from the source and run in the compiled module's namespace."""

from __future__ import annotations

import ast
import doctest
import importlib

import pytest

from segue import native

COMPILED = native.compiled()


def _docstrings(tree: ast.Module) -> list[tuple[str, str, int]]:
    """(name, docstring, line) of the module, its classes and functions, at any depth."""
    out = []
    for node in ast.walk(tree):  # the module first
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                out.append((getattr(node, "name", "<module>"), doc,
                            node.body[0].lineno if node.body else 0))
    return out


@pytest.mark.skipif(not COMPILED, reason="no module is compiled (pure Python install)")
@pytest.mark.parametrize("name", COMPILED)
def test_doctests_pass_on_the_compiled_module(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None and not module.__file__.endswith(".py")
    path = native.ROOT / (name.replace(".", "/") + ".py")
    if not path.exists():
        path = native.ROOT / name.replace(".", "/") / "__init__.py"
    source = path.read_text()
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS, verbose=False)
    for obj, doc, line in _docstrings(ast.parse(source)):
        test = parser.get_doctest(doc, dict(vars(module)), f"{name}.{obj}", str(path), line)
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0
    # Every example of the source ran (none hidden from the parser).
    assert result.attempted == source.count(">>> ")
