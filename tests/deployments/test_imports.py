"""What a process pays just to import the graph: the `serve run` driver and Ray's app builder
import every deployment module, and the Ingress replica imports its own."""

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["deployments.app", "deployments.ingress"])
def test_importing_the_graph_leaves_the_model_stack_unloaded(module):
    probe = f"import sys, {module}; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
