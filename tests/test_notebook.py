"""notebooks/train_grpo.ipynb runs top to bottom on CPU with tiny settings.

The test inserts a cell after the one tagged ``parameters`` (as papermill does)
that points the notebook at ``tiny_data_dir`` and shrinks every budget, then
executes it in a fresh kernel with nbclient.
"""

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "train_grpo.ipynb"


def tiny_overrides(data_dir: Path, output_dir: Path) -> str:
    values = {
        "MODEL": "tiny",
        "DATA_DIR": str(data_dir),
        "ENV_URL": None,
        "DB_SUBSET": None,
        "DIFFICULTY": None,
        "CURRICULUM": False,
        "SFT_STEPS": 5,
        "SFT_LEARNING_RATE": 2e-2,
        "GRPO_STEPS": 2,
        "BATCH_SIZE": 4,
        "NUM_GENERATIONS": 4,
        "MAX_COMPLETION_LENGTH": 48,
        "MAX_TURNS": 2,
        "LEARNING_RATE": 1e-4,
        "EVAL_N": 2,
        "OUTPUT_DIR": str(output_dir),
    }
    return "\n".join(f"{name} = {value!r}" for name, value in values.items())


def test_notebook_layout_is_colab_ready() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    kinds = [cell.cell_type for cell in notebook.cells]
    first_code = kinds.index("code")
    assert "pip" in notebook.cells[first_code].source
    for index, kind in enumerate(kinds):
        if kind == "code":
            assert kinds[index - 1] == "markdown", f"code cell {index} has no markdown"
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs for cell in code), "commit the notebook without outputs"


@pytest.mark.slow
def test_notebook_runs_on_cpu_with_tiny_settings(
    tiny_data_dir: Path, tmp_path: Path
) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    index = next(
        i
        for i, cell in enumerate(notebook.cells)
        if "parameters" in cell.metadata.get("tags", [])
    )
    output_dir = tmp_path / "out"
    notebook.cells.insert(
        index + 1, nbformat.v4.new_code_cell(tiny_overrides(tiny_data_dir, output_dir))
    )
    NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()

    log = (output_dir / "grpo" / "train_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in log] == [1, 2]
    for name in ("random", "oracle", "grpo"):
        summary = json.loads((output_dir / f"eval_{name}" / "summary.json").read_text())
        assert summary["n"] == 2
    oracle = json.loads((output_dir / "eval_oracle" / "summary.json").read_text())
    assert oracle["success_rate"] == 1.0
    assert (output_dir / "grpo" / "learning_curve.png").exists()
    assert (output_dir / "comparison.png").exists()
