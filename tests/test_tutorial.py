"""docs/own-data.md, run as written: a shop's CSV export through import, evaluation, training and
serving to its first recommendations. The commands and the config are read from the page itself,
so the tutorial cannot drift from the code."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "own-data.md"


def tutorial_blocks() -> list[tuple[str, str]]:
    return re.findall(r"```(bash|yaml)\n(.*?)```", TUTORIAL.read_text(), re.S)


def test_the_own_data_tutorial_runs_end_to_end(tmp_path):
    env = {**os.environ, "DYNREC_HOME": str(tmp_path / "home"), "RAY_AUTH_MODE": "disabled"}
    env.pop("DYNREC_CONFIG", None)
    outputs = {}
    blocks = tutorial_blocks()
    assert [kind for kind, _ in blocks] == ["bash", "yaml", "bash", "bash", "bash", "bash", "bash"]
    for kind, body in blocks:
        if kind == "yaml":  # the page's config, saved where its commands look for it
            (tmp_path / "shop.yaml").write_text(body)
            continue
        command = shlex.split(body.strip())
        command[0] = str(Path(sys.executable).parent / Path(command[0]).name)  # .venv/bin/... of this install
        command = [str(ROOT / part) if part.startswith("scripts/") else part for part in command]
        if "quickstart" in command:  # the page serves until Ctrl+C; here it stops after its samples
            command += ["--no-wait", "--port", str(free_port())]
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"{body}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        outputs[command[3] if len(command) > 3 else "export"] = result.stdout

    assert (tmp_path / "shop" / "interactions.csv").is_file()
    assert "100,000" in outputs["data"] and "left out" not in outputs["data"]
    assert "events  100,000 written" in outputs["import"]
    table = {line.split()[1]: line.split() for line in outputs["eval"].splitlines() if line.startswith("shop")}
    assert set(table) == {"pop", "ease"} and float(table["ease"][3]) > float(table["pop"][3])  # NDCG@10
    assert "best validation NDCG@10" in outputs["train"]
    served = outputs["quickstart"]
    assert "recommendations for user C42" in served and "recommendations right after that event" in served
    assert "shop-id+text+image+behaviour" in served  # the model trained in step 6 is the one served
    first = served.split("recommendations for user C42", 1)[1].splitlines()[1]
    assert first.strip().startswith("1.")  # at least one recommendation, with a reason
