"""The library stays free of Ray; the packages import."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ABOVE_THE_LIBRARY = ("ray", "deployments", "training", "dynrec_cli")


def test_no_library_module_imports_ray_or_what_sits_above_it_even_inside_a_function():
    offenders = []
    for path in (ROOT / "dynrec").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] in ABOVE_THE_LIBRARY]
    assert offenders == []


def test_library_never_imports_ray():
    code = (
        "import sys, pkgutil, importlib, dynrec\n"
        "for m in pkgutil.walk_packages(dynrec.__path__, 'dynrec.'): importlib.import_module(m.name)\n"
        "bad = [m for m in sys.modules if m == 'ray' or m.startswith('ray.')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_packages_import():
    import deployments  # noqa: F401
    import dynrec
    import dynrec_cli  # noqa: F401
    import training  # noqa: F401

    assert dynrec.__version__
