"""notebooks/train_grpo.ipynb, run as a Colab user runs it.

The slow test plays Colab: a fresh virtualenv with only torch and ipykernel (as a
Colab runtime has them), no checkout and no ``../shared`` in sight, and
``SQLENV_SOURCE`` pointed at a local git repository holding the staged Space
(``make stage``, the tree ``openenv push`` uploads, with the built data). The
notebook is executed top to bottom with its own CPU defaults, in a kernel of
that virtualenv: it must install SQLEnv from the source, take the data from
there, train, evaluate and plot.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "train_grpo.ipynb"
TORCH_SPEC = "torch==2.13.0"  # the Makefile's TORCH_SPEC: a local CPU wheel
SOURCE_LINE = re.compile(r'^SQLENV_SOURCE = "[^"]+"$', re.MULTILINE)


def code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_notebook_layout_is_colab_ready() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    kinds = [cell.cell_type for cell in notebook.cells]
    for index, kind in enumerate(kinds):
        if kind == "code":
            assert kinds[index - 1] == "markdown", f"code cell {index} has no markdown"
    install = code_cells(notebook)[0]
    # One assignment names where SQLEnv comes from; the cell installs from it.
    assignments = re.findall(r"^\w+ = ", install.source, re.MULTILINE)
    assert assignments == ["SQLENV_SOURCE = "]
    assert SOURCE_LINE.search(install.source)
    assert "pip" in install.source and "find_spec" in install.source
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert all(not cell.outputs for cell in code_cells(notebook)), (
        "commit the notebook without outputs"
    )
    text = "\n".join(cell.source for cell in notebook.cells)
    assert "drive.google" not in text and "../shared" not in text


def run(*command: str, **kwargs) -> None:
    subprocess.run(command, check=True, **kwargs)


@pytest.fixture(scope="module")
def space_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository holding the staged Space, as Hugging Face hosts it."""
    repo = tmp_path_factory.mktemp("space") / "sql_env"
    run("make", "-C", str(REPO), "stage", f"SPACE_DIR={repo}")
    assert (repo / "data" / "spider" / "bank.sqlite").is_file()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    run(*git, "init", "-q")
    run(*git, "add", "-A")
    run(*git, "commit", "-q", "-m", "Space")
    return repo


@pytest.fixture(scope="module")
def colab_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with what a Colab runtime has: torch and a kernel."""
    venv = tmp_path_factory.mktemp("colab") / "venv"
    run(sys.executable, "-m", "venv", str(venv))
    python = venv / "bin" / "python"
    run(str(python), "-m", "pip", "install", "-q", TORCH_SPEC, "ipykernel")
    return python


def kernel_env(kernel_dir: Path, python: Path) -> dict[str, str]:
    """This process's environment without the project's virtualenv or paths."""
    spec = kernel_dir / "kernels" / "colab"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [
                    str(python),
                    "-m",
                    "ipykernel_launcher",
                    "-f",
                    "{connection_file}",
                ],
                "display_name": "Colab-like",
                "language": "python",
            }
        )
    )
    project_bin = str(Path(sys.executable).parent)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p != project_bin
    )
    env["JUPYTER_PATH"] = str(kernel_dir)
    return env


@pytest.mark.slow
def test_notebook_runs_like_colab(
    space_repository: Path, colab_python: Path, tmp_path: Path, monkeypatch
) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    install = code_cells(notebook)[0]
    install.source = SOURCE_LINE.sub(
        f'SQLENV_SOURCE = "git+file://{space_repository}"', install.source
    )
    # Where the kernel found SQLEnv, checked after the notebook's own cells.
    notebook.cells.append(
        nbformat.v4.new_code_cell(
            "import sql_env, sys\nprint(sql_env.__file__)\nprint(sys.executable)"
        )
    )
    work = tmp_path / "content"  # Colab's working directory
    work.mkdir()
    env = kernel_env(tmp_path / "jupyter", colab_python)
    monkeypatch.setenv("JUPYTER_PATH", env["JUPYTER_PATH"])
    client = NotebookClient(
        notebook,
        timeout=1800,
        kernel_name="colab",
        resources={"metadata": {"path": str(work)}},
    )
    client.execute(env=env)

    probe = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
    installed, executable = probe.split()
    assert Path(executable).parent == colab_python.parent
    assert str(colab_python.parents[1]) in installed  # the fresh venv, not REPO
    assert not installed.startswith(str(REPO))
    assert (work / "sqlenv" / "data" / "spider" / "bank.sqlite").is_file()

    out = work / "runs" / "notebook"
    log = (out / "grpo" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in log] == [1, 2, 3]
    summaries = {
        name: json.loads((out / f"eval_{name}" / "summary.json").read_text())
        for name in ("random", "oracle", "grpo")
    }
    assert {s["n"] for s in summaries.values()} == {3}  # the CPU default EVAL_N
    assert summaries["oracle"]["success_rate"] == 1.0
    for png in ("grpo/learning_curve.png", "comparison.png"):
        assert (out / png).stat().st_size > 1000
    shutil.rmtree(work / "sqlenv")  # 30 MB of databases
