"""The training scripts run as files and their PEP 723 headers resolve.

``uv run scripts/X.py`` builds an environment from the script's header; SQLEnv
is not on PyPI, so each header takes it from this checkout through
``[tool.uv.sources]``. ``uv lock --script --dry-run`` resolves that header
against PyPI without installing anything.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
TRAINING_SCRIPTS = [
    "evaluate.py",
    "make_sft_data.py",
    "overfit_check.py",
    "train_demo.py",
    "train_grpo.py",
]


@pytest.mark.parametrize("name", TRAINING_SCRIPTS)
def test_script_runs_as_a_file_and_documents_its_arguments(name: str) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / name), "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert "--" in done.stdout and "usage" in done.stdout.lower()


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINING_SCRIPTS)
def test_script_header_resolves(name: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            Path(sys.executable).parent / "uv",
            "lock",
            "--script",
            str(SCRIPTS / name),
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "openenv-sql-env" in done.stderr + done.stdout
