"""The installed `dynrec` entry point, run as a user would."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

DYNREC = str(Path(sys.executable).with_name("dynrec"))


def run(*args, env=None):
    return subprocess.run([DYNREC, *args], capture_output=True, text=True, timeout=300, env=env)


def test_eval_prints_a_table():
    result = run("eval", "--dataset", "ml-100k", "--models", "pop,ease", "--no-progress")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[1]: line.split() for line in result.stdout.splitlines() if line.startswith("ml-100k")}
    assert set(rows) == {"pop", "ease"}
    assert float(rows["ease"][3]) > float(rows["pop"][3])  # NDCG@10


def test_data_summary_reports_counts():
    result = run("data", "--dataset", "ml-1m")
    assert result.returncode == 0, result.stderr
    assert "487,650" in result.stdout and "3,883" in result.stdout


def test_bad_model_name_is_a_clear_error():
    result = run("eval", "--dataset", "ml-100k", "--models", "nope")
    assert result.returncode == 2
    assert "unknown model" in result.stderr and "Traceback" not in result.stderr


def test_an_unfinished_run_is_a_clear_error(tmp_path):
    result = run("eval", "--dataset", "ml-100k", "--models", "", "--runs", "never-trained",
                 env={**os.environ, "DYNREC_HOME": str(tmp_path)})
    assert result.returncode == 2
    assert "no finished run 'never-trained'" in result.stderr and "Traceback" not in result.stderr


def test_missing_data_names_the_variable(tmp_path):
    result = run("--data-dir", str(tmp_path), "data", "--dataset", "ml-100k")
    assert result.returncode == 2
    assert "DYNREC_DATA_DIR" in result.stderr and "u.data" in result.stderr


@pytest.mark.parametrize("command", [["--help"], ["eval", "--help"], ["quickstart", "--help"]])
def test_help(command):
    assert run(*command).returncode == 0
