"""The import graph of ``rsanet.models``: every module imports on its own in a fresh
interpreter (no cycle that only a particular import order hides), and the registry is a
leaf that imports none of the other model modules."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import rsanet.models

MODELS_DIR = Path(rsanet.models.__file__).parent
MODULES = sorted(f"rsanet.models.{info.name}" for info in pkgutil.iter_modules([str(MODELS_DIR)]))
SRC = str(MODELS_DIR.parent.parent)

#: run a module alone: ``rsanet.models`` is a bare package object (its ``__init__`` does not
#: run), so only the module's own imports are executed; prints the model modules loaded
ALONE = """
import importlib, json, sys, types
package = types.ModuleType("rsanet.models")
package.__path__ = [{models_dir!r}]
import rsanet
sys.modules["rsanet.models"] = package
rsanet.models = package
importlib.import_module({module!r})
{then}
print(json.dumps(sorted(m for m in sys.modules if m.startswith("rsanet.models."))))
"""


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": SRC, "PATH": "", "TRITON_INTERPRET": "1"},
    )


def alone(module: str, then: str = "") -> list[str]:
    """The model modules loaded by importing ``module`` by itself (and running ``then``)."""
    code = ALONE.format(models_dir=str(MODELS_DIR), module=module, then=then)
    result = run_python(code)
    assert result.returncode == 0, f"importing {module} alone failed:\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_package_has_the_expected_modules():
    for name in ("registry", "builder", "weights", "vit_weights", "safetensors_file"):
        assert f"rsanet.models.{name}" in MODULES


@pytest.mark.parametrize("module", MODULES)
def test_every_module_imports_alone_in_a_fresh_interpreter(module):
    result = run_python(f"import {module}")
    assert result.returncode == 0, result.stderr
    assert module in alone(module)


def test_the_registry_imports_no_other_model_module():
    loaded = alone(
        "rsanet.models.registry",
        then=(
            "r = sys.modules['rsanet.models.registry']\n"
            "f = r.register_model(lambda: None)\n"
            "assert r.list_models() == ['<lambda>'] and r.is_model('<lambda>')\n"
            "assert r.similar_model_names('<lambda)') == ['<lambda>']\n"
            "try:\n    r.model_factory('<lambda)')\nexcept r.UnknownModelError as e:\n"
            "    assert 'did you mean <lambda>' in str(e)\n"
            "else:\n    raise AssertionError('no error')"
        ),
    )
    assert loaded == ["rsanet.models.registry"]


def test_the_registry_source_names_no_other_model_module():
    """Not even inside a function, or by a string given to importlib."""
    source = (MODELS_DIR / "registry.py").read_text()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("rsanet"), ast.unparse(node)
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("rsanet") for a in node.names), ast.unparse(node)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "importlib" not in modules and "__import__" not in names


def test_no_private_names_are_imported_across_modules():
    """Helpers used by another module are public (documented) names."""
    offenders = []
    for path in (MODELS_DIR.parent).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rsanet"):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        if node.module != "rsanet.layers":  # the layers' _args module
                            offenders.append(f"{path.name}: from {node.module} import {alias.name}")
    assert offenders == []
