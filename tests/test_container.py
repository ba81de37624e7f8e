"""The image: the Dockerfile's conventions, and the staged Space built and served.

``make container-test`` builds the tree ``openenv push`` uploads (``make stage``) with
podman, serves it as uid 1000 on port 7860, plays one episode through ``SQLEnvClient``
and checks the SIGTERM stop. Nothing here skips: without podman (which the smoke kit
installs with apt, as root), the smoke kit or the built data, the test fails.
``tests/test_layout.py`` checks the staged tree itself.
"""

import re
import subprocess
from pathlib import Path

import pytest

import sql_env

REPO = Path(sql_env.__file__).resolve().parent
DOCKERFILE = REPO / "server" / "Dockerfile"


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
    # Set here, so push has nothing to insert (tests/test_layout.py).
    assert re.search(r"^\s+ENABLE_WEB_INTERFACE=true \\$", text, re.M)


def test_dockerignore_keeps_tests_and_venvs_out() -> None:
    patterns = (REPO / ".dockerignore").read_text().split()
    for pattern in (".venv", "tests/", "notebooks/", "**/__pycache__", "data/cache/"):
        assert pattern in patterns
    assert not [p for p in patterns if p.startswith("data") and p != "data/cache/"]


@pytest.mark.slow
def test_container_serves_an_episode_from_the_staged_space(
    spider_data_dir: Path, tmp_path: Path, record_property
) -> None:
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
