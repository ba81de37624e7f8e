"""Scale-out: 3 SQLEnv replicas behind nginx on loopback, 96 concurrent episodes.

nginx (the Debian package; ``make test`` installs it, so a missing binary is a
failure) proxies WebSocket connections to three uvicorn servers with the
shipped ``deploy/nginx.conf``. 96 typed clients play at once through it: all
reset, wait for each other, then each answers its question correctly. Every
replica served sessions, and new episodes still succeed after one replica dies.
"""

import asyncio
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import yaml

from sql_env.benchmarks.server_process import ServerProcess, free_port
from sql_env.benchmarks.server_process import sqlenv_server as make_server
from sql_env.client import SQLEnvClient
from sql_env.server.question_bank import Question, load_bank

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
NGINX_TEMPLATE = REPO / "deploy" / "nginx.conf"
REPLICAS = 3
EPISODES = 96
SLOTS_PER_REPLICA = 64
START_TIMEOUT_S = 30.0


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        pytest.fail("nginx is not installed: run `make setup-nginx` (apt-get nginx)")
    return found


def render_config(prefix: Path, port: int, backends: list[ServerProcess]) -> Path:
    upstreams = "\n        ".join(f"server 127.0.0.1:{s.port};" for s in backends)
    text = (
        NGINX_TEMPLATE.read_text()
        .replace("{{PREFIX}}", str(prefix))
        .replace("{{LISTEN}}", f"127.0.0.1:{port}")
        .replace("{{UPSTREAMS}}", upstreams)
    )
    path = prefix / "nginx.conf"
    path.write_text(text)
    return path


def wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(errors="replace")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if json.loads(response.read()).get("status") == "healthy":
                    return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"nginx at {url} never proxied /health:\n" + log.read_text())


@pytest.fixture(scope="module")
def cluster(spider_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    binary = nginx_binary()
    prefix = tmp_path_factory.mktemp("nginx")
    backends = [
        make_server(spider_data_dir, MAX_CONCURRENT_ENVS=str(SLOTS_PER_REPLICA))
        for _ in range(REPLICAS)
    ]
    proc = None
    try:
        for backend in backends:
            backend.start()
        port = free_port()
        config = render_config(prefix, port, backends)
        check = subprocess.run(
            [binary, "-t", "-c", str(config), "-p", str(prefix)],
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, check.stderr
        proc = subprocess.Popen(
            [binary, "-c", str(config), "-p", str(prefix), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, prefix / "error.log")
        yield url, backends, prefix
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=15)
        for backend in backends:
            backend.stop()


def playable(spider_data_dir: Path, n: int) -> list[Question]:
    questions = []
    for question in load_bank(spider_data_dir).eligible("dev"):
        try:
            json.dumps(question.gold_rows)
        except TypeError:
            continue
        questions.append(question)
        if len(questions) == n:
            return questions
    raise AssertionError("not enough playable dev questions")


async def play(url: str, question: Question, barrier: asyncio.Barrier) -> bool:
    async with SQLEnvClient(base_url=url, message_timeout_s=120) as env:
        reset = await env.reset(question_id=question.id)
        assert reset.observation.question_id == question.id
        await barrier.wait()  # all sessions are open at the same time
        table = question.tables_used[0] if question.tables_used else ""
        described = await env.describe(table or reset.observation.tables[0])
        assert not described.observation.error, described.observation.error
        queried = await env.query(question.gold_sql)
        assert not queried.observation.error, queried.observation.error
        rows = [list(row) for row in question.gold_rows]
        result = await env.answer(json.dumps(rows))
        assert result.done
        return bool(result.observation.answer_correct)


def upstreams_used(prefix: Path) -> Counter:
    """Replica address of every proxied WebSocket session, from nginx's log."""
    used = Counter()
    for line in (prefix / "access.log").read_text().splitlines():
        if "GET /ws" in line and " 101 " in line:
            used[line.split()[-2]] += 1
    return used


def test_96_concurrent_episodes_through_nginx(cluster, spider_data_dir: Path):
    url, backends, prefix = cluster
    questions = playable(spider_data_dir, EPISODES)

    async def run() -> list[bool]:
        barrier = asyncio.Barrier(EPISODES)
        return await asyncio.gather(*(play(url, q, barrier) for q in questions))

    results = asyncio.run(run())
    assert all(results), f"{results.count(False)} episodes answered wrong"
    assert all(backend.alive() for backend in backends)
    used = upstreams_used(prefix)
    assert sum(used.values()) == EPISODES, used
    assert set(used) == {f"127.0.0.1:{b.port}" for b in backends}, used


def test_episodes_continue_when_a_replica_dies(cluster, spider_data_dir: Path):
    url, backends, _ = cluster
    backends[-1].stop()
    questions = playable(spider_data_dir, 12)

    async def run() -> list[bool]:
        barrier = asyncio.Barrier(len(questions))
        return await asyncio.gather(*(play(url, q, barrier) for q in questions))

    assert all(asyncio.run(run()))


K8S_MANIFEST = REPO / "deploy" / "k8s.yaml"


def manifest_container() -> dict:
    docs = [d for d in yaml.safe_load_all(K8S_MANIFEST.read_text()) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service"} <= kinds, kinds
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_k8s_manifest_probes_health_and_requests_resources():
    container = manifest_container()
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    requests = container["resources"]["requests"]
    assert requests["cpu"] and requests["memory"]
    port = container["ports"][0]["containerPort"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["PORT"] == str(port)


def test_server_runs_with_the_manifest_settings(spider_data_dir: Path):
    env = {e["name"]: e["value"] for e in manifest_container()["env"]}
    env.pop("PORT")
    with make_server(spider_data_dir, **env) as server:

        async def one_step() -> str:
            async with SQLEnvClient(base_url=server.base_url) as client:
                reset = await client.reset(split="dev", seed=0)
                step = await client.describe(reset.observation.tables[0])
                return step.observation.error

        assert asyncio.run(one_step()) == ""


def test_benchmark_quick_run_writes_its_report(spider_data_dir: Path, tmp_path: Path):
    """The benchmark runs end to end on a tiny size (its figures are not checked)."""
    subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "benchmark.py"),
            "--quick",
            "--data_dir",
            str(spider_data_dir),
            "--out_dir",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    result = json.loads((tmp_path / "benchmark.json").read_text())
    sections = {"engine", "wire", "memory", "isolation", "pools"}
    assert sections | {"machine", "targets"} <= set(result)
    assert result["engine"]["after"]["obs_errors"] == 0
    assert all(row["errors"] == 0 for row in result["wire"]["rows"])
    servers = {row["server"] for row in result["wire"]["rows"]}
    assert servers == {"echo", "after-1w", "after-2w"}
    assert result["memory"]["after"]["errors"] == 0
    loads = result["isolation"]["after"]
    assert set(loads) == {"none", "runaway", "reset_flood", "big_answer"}
    for load in loads.values():
        assert load["probe_errors"] == 0 and load["server_alive"]
        assert {"describe", "query", "health"} <= set(load["probes"])
    assert {"raw_sqlite3", "sqlenv_pool"} <= set(result["pools"]["round_trip_ms"])
    assert "### Targets" in (tmp_path / "benchmark.md").read_text()
