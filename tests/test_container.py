"""Packaging: the manifest, the Dockerfile, the staged Space, and the image running.

``make container-test`` builds the staged Space tree (what ``openenv push`` uploads and
Hugging Face builds) with podman, serves it as uid 1000 on port 7860, plays one
episode through ``SQLEnvClient`` and checks the SIGTERM stop. It runs where podman
can (the smoke script installs podman with apt when it is missing, as root).
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sql_env
from sql_env.scripts import stage_space

REPO = Path(sql_env.__file__).resolve().parent
DOCKERFILE = REPO / "server" / "Dockerfile"
SMOKE = REPO.parent / "shared" / "container" / "container-smoke.sh"


def podman_unavailable() -> str | None:
    """Why the container test cannot run here, or None when it can."""
    if not SMOKE.is_file():
        return f"the container smoke kit {SMOKE} is missing"
    if shutil.which("podman"):
        return None
    if os.geteuid() == 0 and shutil.which("apt-get"):
        return None  # container-smoke.sh installs podman, runc and debootstrap
    return "podman is not installed and cannot be (needs root and apt-get)"


def test_openenv_validate_static_passes() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "openenv.cli",
            "validate",
            str(REPO),
            "--level",
            "static",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Verdict: PASS" in result.stdout


def test_dockerfile_follows_the_space_conventions() -> None:
    text = DOCKERFILE.read_text()
    instructions = [
        line.split()[0] for line in text.splitlines() if line and line[0].isalpha()
    ]
    assert text.count("\nFROM ") == 1 and "FROM python:3.11-slim" in text
    assert "useradd --create-home --uid 1000" in text and "\nUSER 1000\n" in text
    assert re.search(r"^\s+PORT=8000$", text, re.M)
    assert "COPY data/ data/" in text
    commands = [line for line in text.splitlines() if not line.startswith("#")]
    assert not [line for line in commands if "torch" in line or "[train" in line]
    healthcheck = text[text.index("HEALTHCHECK") :].split("\n\n")[0]
    assert 'CMD ["python", "-c"' in healthcheck and "PORT" in healthcheck
    assert instructions[-1] == "CMD"
    assert 'CMD ["sh", "-c", "exec uvicorn sql_env.server.app:app' in text


def test_dockerignore_keeps_tests_and_venvs_out() -> None:
    patterns = (REPO / ".dockerignore").read_text().split()
    for pattern in (".venv", "tests/", "notebooks/", "**/__pycache__", "data/cache/"):
        assert pattern in patterns


@pytest.mark.slow
def test_staged_space_is_the_tree_push_uploads(
    spider_data_dir: Path, tmp_path: Path
) -> None:
    space = tmp_path / "space"
    stage_space.main(["--out", str(space)])
    dockerfile = (space / "Dockerfile").read_text()
    assert not (space / "server" / "Dockerfile").exists()
    assert "ENABLE_WEB_INTERFACE=true" in dockerfile
    for required in ("__init__.py", "pyproject.toml", "openenv.yaml", "models.py"):
        assert (space / required).is_file(), required
    assert (space / "client" / "sql_env_client.py").is_file()
    assert not (space / "client.py").exists()  # no module shadowing client/
    for absent in ("tests", ".venv", ".git", "notebooks", "build"):
        assert not (space / absent).exists(), absent
    assert not list(space.rglob("__pycache__"))
    staged_dbs = sorted(p.name for p in (space / "data").glob("*/databases/*/*"))
    built_dbs = sorted(p.name for p in spider_data_dir.glob("*/databases/*/*.sqlite"))
    assert staged_dbs == built_dbs and built_dbs
    for name in ("bank.sqlite", "report.json", "report.md"):
        assert (space / "data" / "spider" / name).is_file(), name
    readme = (space / "README.md").read_text()
    front_matter = readme.split("---")[1]
    for line in ("sdk: docker", "app_port: 8000", "base_path: /web", "- openenv"):
        assert line in front_matter, line


@pytest.mark.slow
def test_container_serves_an_episode_from_the_staged_space(
    spider_data_dir: Path, tmp_path: Path, record_property
) -> None:
    reason = podman_unavailable()
    if reason:
        pytest.skip(f"container test skipped: {reason}")
    result = subprocess.run(
        ["make", "container-test", f"SPACE_DIR={tmp_path / 'space'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=850,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    size = re.search(r"image built: (\d+) bytes", output)
    assert size, output[-3000:]
    record_property("image_bytes", int(size[1]))
    for step in ("HEALTHCHECK healthy", "SMOKE_HOOK passed", "stopped gracefully"):
        assert step in output, step
    assert re.search(r"played spider/\S+ .*reward 1\.0", output)
