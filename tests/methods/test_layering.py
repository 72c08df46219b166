"""``methods`` depends only on the contract: no module under methods/ imports the harness
(``benchmark``) or the analysis; what a method needs of the run reaches it through the round
view (``view.extras``), the way the loop hands over everything else."""
import ast
import subprocess
import sys
from pathlib import Path

from methods import METHODS

ROOT = Path(__file__).resolve().parents[2]
# the standard stack a method may build on, besides the standard library and methods/ itself
STACK = {"numpy", "torch", "scipy", "sklearn", "transformers"}


def outside_imports(source: str) -> set[str]:
    """Top-level packages a module imports, anywhere in it (function bodies too), that are
    neither methods/ (relative or absolute), the standard library nor ``STACK``."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return {n for n in names
            if n != "methods" and n not in STACK and n not in sys.stdlib_module_names}


def test_every_method_module_imports_only_the_contract_and_the_standard_stack():
    modules = sorted((ROOT / "methods").rglob("*.py"))   # a sub-package's modules too
    assert len(modules) > 15
    found = {str(p.relative_to(ROOT)): outside_imports(p.read_text()) for p in modules}
    assert {name: bad for name, bad in found.items() if bad} == {}


def test_the_walk_finds_a_back_edge_wherever_it_is_written():
    source = ("from __future__ import annotations\nimport numpy as np\nfrom .base import Method\n"
              "from methods.registry import register\n"
              "def load():\n    from benchmark.backbones import collate\n"
              "    import analysis.stats\n    import pandas\n")
    assert outside_imports(source) == {"benchmark", "analysis", "pandas"}


def test_registering_every_method_loads_neither_the_harness_nor_the_analysis():
    code = ("import sys\nimport methods.registry as r\nprint('torch' in sys.modules)\n"
            "r.get_method('alps')\nprint(len(r.METHODS), sorted({m.split('.')[0] for m in "
            "sys.modules} & {'benchmark', 'analysis'}))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    # the registry alone imports no torch (``python -m benchmark --help`` needs none); the
    # first lookup imports every method module, and none of them reaches outside methods/
    assert out[0] == "False"
    count, loaded = out[1].split(" ", 1)
    assert int(count) == len(METHODS) > 15 and loaded == "[]"
