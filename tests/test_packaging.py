"""The library stays free of Ray; the three packages import."""

import subprocess
import sys


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
    import training  # noqa: F401
    import dynrec

    assert dynrec.__version__
