"""The repository as OpenEnv's tools see it: validate, push, AutoEnv, public names only.

``openenv validate`` and ``openenv push`` run as their CLI runs them; push uploads to a
local stand-in for the Hub (``scripts/stage_space.py``), so the files checked here are
the files a Space would receive.
"""

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import sql_env
from sql_env.benchmarks.server_process import sqlenv_server
from sql_env.server.question_bank import Question, load_bank

REPO = Path(sql_env.__file__).resolve().parent
OPENENV = [sys.executable, "-m", "openenv.cli"]
# What push must find at the root (openenv.cli's structure check).
PUSH_REQUIRED = (
    "openenv.yaml",
    "__init__.py",
    "client.py",
    "README.md",
    "pyproject.toml",
    "server/Dockerfile",
    "server/__init__.py",
    "server/app.py",
)


def load_script(name: str):
    """A script of ``scripts/`` as a module: scripts are files to run, not a package."""
    path = REPO / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


stage_space = load_script("stage_space")


def openenv_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*OPENENV, *args], capture_output=True, text=True, timeout=300, cwd=REPO
    )


def test_openenv_validate_accepts_the_repository() -> None:
    default = openenv_cli("validate", ".")
    static = openenv_cli("validate", ".", "--level", "static")
    assert default.returncode == 0, default.stdout + default.stderr
    assert "PASS  static.manifest" in default.stdout
    assert static.returncode == 0, static.stdout + static.stderr
    assert "Verdict: PASS" in static.stdout


def test_layout_has_what_push_requires() -> None:
    missing = [name for name in PUSH_REQUIRED if not (REPO / name).is_file()]
    assert not missing
    assert not (REPO / "client").exists()  # a package would shadow client.py


def make_env_dir(root: Path, without: str) -> Path:
    """A copy of the files push checks, minus ``without``, with stand-in data."""
    for name in PUSH_REQUIRED:
        if name != without:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, root / name)
    for name in stage_space.REQUIRED_DATA:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("{}")
    (root / "data" / "spider" / "databases" / "db").mkdir(parents=True)
    (root / "data" / "spider" / "databases" / "db" / "db.sqlite").write_bytes(b"")
    return root


def test_push_refuses_a_layout_without_client_py(tmp_path: Path) -> None:
    env_dir = make_env_dir(tmp_path / "env", without="client.py")
    with pytest.raises(SystemExit, match="Required file missing: client.py"):
        stage_space.stage(tmp_path / "space", exclude=None, env_dir=env_dir)
    assert not (tmp_path / "space").exists()


def test_stage_never_replaces_a_directory_that_is_not_a_space(tmp_path: Path) -> None:
    env_dir = make_env_dir(tmp_path / "env", without="")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(SystemExit, match="not a staged Space"):
        stage_space.stage(mine, exclude=None, env_dir=env_dir)
    assert (mine / "notes.txt").read_text() == "keep"


@pytest.fixture(scope="module")
def space(spider_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What ``openenv push --exclude .dockerignore`` uploads (``make stage``)."""
    out = tmp_path_factory.mktemp("stage") / "space"
    stage_space.main(["--out", str(out)])
    return out


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_push_uploads_the_repository_unchanged_but_the_dockerfile_move(
    space: Path,
) -> None:
    staged = files_under(space)
    assert "Dockerfile" in staged and "server/Dockerfile" not in staged
    assert (space / "Dockerfile").read_bytes() == (
        REPO / "server/Dockerfile"
    ).read_bytes()
    changed = [
        name
        for name in sorted(staged - {"Dockerfile"})
        if (space / name).read_bytes() != (REPO / name).read_bytes()
    ]
    assert not changed  # README front matter and ENABLE_WEB_INTERFACE already there
    for name in set(PUSH_REQUIRED) - {"server/Dockerfile"}:
        assert name in staged, name
    for prefix in ("tests/", "notebooks/", "docs/", "build/", "outputs/", "runs/"):
        assert not [name for name in staged if name.startswith(prefix)], prefix
    assert not [n for n in staged if "__pycache__" in n or ".egg-info" in n]
    assert not [n for n in staged if any(p.startswith(".") for p in n.split("/"))]


@pytest.mark.slow
def test_the_space_bundles_the_built_data(space: Path, spider_data_dir: Path) -> None:
    built = files_under(spider_data_dir / "spider" / "databases")
    assert files_under(space / "data" / "spider" / "databases") == built and built
    for name in ("bank.sqlite", "report.json", "report.md"):
        assert (space / "data" / "spider" / name).read_bytes() == (
            spider_data_dir / "spider" / name
        ).read_bytes()


@pytest.mark.slow
def test_plain_openenv_push_uploads_the_same_space_plus_extras(
    space: Path, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    stage_space.stage(plain, exclude=None)
    assert files_under(space) <= files_under(plain)
    assert (plain / "tests" / "test_layout.py").is_file()  # only --exclude drops it
    assert (plain / "Dockerfile").read_bytes() == (space / "Dockerfile").read_bytes()


@pytest.mark.slow
def test_the_space_installs_as_the_package_autoenv_discovers(
    space: Path, tmp_path: Path
) -> None:
    """``AutoEnv.from_env("<owner>/<space>")`` pip-installs the Space repository."""
    source = tmp_path / "source"
    shutil.copytree(space, source, ignore=shutil.ignore_patterns("databases"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["-q", str(source), "-w", str(tmp_path / "wheel")],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith("/METADATA")))
    # AutoEnv maps the distribution openenv-sql-env to the module sql_env.
    assert b"\nName: openenv-sql-env\n" in metadata
    for module in ("client.py", "models.py", "openenv.yaml", "server/app.py"):
        assert f"sql_env/{module}" in names, module


AUTOENV_EPISODE = """
import json, sys
from openenv import AutoAction, AutoEnv

url, question_id, answer = sys.argv[1:]
Action = AutoAction.from_env("sql_env")
env = AutoEnv.from_env("sql_env", base_url=url)
with env.sync() as session:
    obs = session.reset(question_id=question_id).observation
    described = session.step(Action(action_type="DESCRIBE", argument=obs.tables[0]))
    result = session.step(Action(action_type="ANSWER", argument=answer))
print(json.dumps({
    "client": type(env).__qualname__,
    "action": Action.__qualname__,
    "observation": type(result.observation).__qualname__,
    "question_id": obs.question_id,
    "described": described.observation.result.splitlines()[0],
    "reward": result.reward,
    "done": result.done,
    "answer_correct": result.observation.answer_correct,
}))
"""


@pytest.mark.slow
def test_autoenv_from_env_plays_an_episode(tiny_data_dir: Path, tmp_path: Path) -> None:
    question: Question = load_bank(tiny_data_dir).eligible("dev")[0]
    answer = json.dumps([list(row) for row in question.gold_rows])
    # A fresh discovery cache: AutoEnv keeps one per user across processes.
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    with sqlenv_server(tiny_data_dir, log_path=tmp_path / "server.log") as server:
        url = server.base_url
        run = subprocess.run(
            [sys.executable, "-c", AUTOENV_EPISODE, url, question.id, answer],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
    assert run.returncode == 0, run.stderr[-3000:]
    played = json.loads(run.stdout.splitlines()[-1])
    assert played["client"] == "SQLEnvClient"
    assert played["action"] == "SQLAction"
    assert played["observation"] == "SQLObservation"
    assert played["question_id"] == question.id
    assert played["described"].startswith("Table ")
    assert (played["reward"], played["done"], played["answer_correct"]) == (
        1.0,
        True,
        True,
    )


LIGHT_IMPORTS = """
import sys
import sql_env, sql_env.server.verifier, sql_env.server.rewards
loaded = {name.split(".")[0] for name in sys.modules}
print(",".join(sorted(loaded & {"openenv", "gradio", "fastapi"})))
"""


def test_package_root_and_pure_core_import_without_openenv() -> None:
    run = subprocess.run(
        [sys.executable, "-c", LIGHT_IMPORTS], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == ""
    assert sql_env.SQLEnvClient is sql_env.client.SqlEnv


# --- no private names of openenv -----------------------------------------------------


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_openenv_uses(source: str) -> list[str]:
    """Private ``openenv`` names that ``source`` imports or reaches into.

    Flags imports of private modules or names (``from openenv.cli.commands.push import
    _prepare_staging_directory``, ``openenv.cli._cli_utils``), private attributes of an
    imported openenv module, and ``self._x`` in a subclass of an openenv class where the
    subclass does not define ``_x`` itself (an inherited private member). Overriding a
    hook such as ``EnvClient._parse_result`` defines it, so calling it is fine.
    """
    tree = ast.parse(source)
    found: list[str] = []
    openenv_names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "openenv":
                    if any(is_private(part) for part in alias.name.split(".")):
                        found.append(f"import {alias.name}")
                    openenv_names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] != "openenv":
                continue
            for alias in node.names:
                dotted = f"{node.module}.{alias.name}"
                if any(is_private(part) for part in dotted.split(".")):
                    found.append(f"from {node.module} import {alias.name}")
                openenv_names.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in openenv_names
            and is_private(node.attr)
        ):
            found.append(f"{node.value.id}.{node.attr}")
        if isinstance(node, ast.ClassDef) and any(
            isinstance(base, ast.Name)
            and base.id in openenv_names
            or isinstance(base, ast.Subscript)
            and isinstance(base.value, ast.Name)
            and base.value.id in openenv_names
            for base in node.bases
        ):
            found += inherited_private_uses(node)
    return found


def inherited_private_uses(cls: ast.ClassDef) -> list[str]:
    defined = {
        n.name
        for n in cls.body
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }
    used: set[str] = set()
    for node in ast.walk(cls):
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    defined.add(target.id)
                elif isinstance(target, ast.Attribute):
                    defined.add(target.attr)
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
            and is_private(node.attr)
        ):
            used.add(node.attr)
    return [f"{cls.name}: self.{name}" for name in sorted(used - defined)]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param(
            "from openenv.cli.commands.push import _prepare_staging_directory",
            ["from openenv.cli.commands.push import _prepare_staging_directory"],
            id="private-function",
        ),
        pytest.param(
            "from openenv.cli._cli_utils import validate_env_structure",
            ["from openenv.cli._cli_utils import validate_env_structure"],
            id="private-module",
        ),
        pytest.param(
            "import openenv.auto._discovery as d",
            ["import openenv.auto._discovery"],
            id="import-private-module",
        ),
        pytest.param(
            "from openenv.cli.commands import push\npush._load_ignore_patterns(1, 2)",
            ["push._load_ignore_patterns"],
            id="private-attribute",
        ),
        pytest.param(
            "from openenv.core import EnvClient\n"
            "class C(EnvClient[int, int, int]):\n"
            "    def act(self, a):\n"
            "        return self._dispatch(lambda: self._step_async(a))\n",
            ["C: self._dispatch", "C: self._step_async"],
            id="inherited-private-method",
        ),
        pytest.param(
            "from openenv.core import EnvClient\n"
            "class C(EnvClient):\n"
            "    def __init__(self):\n"
            "        self._mine = 1\n"
            "    def _parse_state(self, p):\n"
            "        return p\n"
            "    def state_of(self, p):\n"
            "        return self._parse_state(p), self._mine, self.__class__\n",
            [],
            id="own-overrides-and-attributes",
        ),
        pytest.param(
            "from openenv.core import EnvClient\nfrom openenv import AutoEnv",
            [],
            id="public-imports",
        ),
    ],
)
def test_private_name_check(source: str, expected: list[str]) -> None:
    assert private_openenv_uses(source) == expected


def project_sources() -> dict[str, str]:
    """Every Python file and notebook code cell of the repository (not git-ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    sources: dict[str, str] = {}
    for name in [n for n in listed if n.endswith((".py", ".ipynb"))]:
        text = (REPO / name).read_text()
        if name.endswith(".ipynb"):
            cells = json.loads(text)["cells"]
            code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
            lines = "\n".join(code).splitlines()
            text = "\n".join(line for line in lines if line[:1] not in ("!", "%"))
        sources[name] = text
    return sources


def test_no_private_openenv_name_is_used_anywhere() -> None:
    sources = project_sources()
    assert "client.py" in sources and "scripts/stage_space.py" in sources
    uses = {name: private_openenv_uses(text) for name, text in sources.items()}
    assert {name: found for name, found in uses.items() if found} == {}


def test_every_module_stays_under_500_lines() -> None:
    # One concept per module: a module past this size holds two.
    sources = [
        p
        for p in REPO.rglob("*.py")
        if not p.relative_to(REPO).parts[0].startswith((".", "build", "outputs"))
        and p.relative_to(REPO).parts[0] not in ("tests", "data", "runs")
    ]
    assert len(sources) > 50
    too_long = {
        str(p.relative_to(REPO)): n
        for p in sources
        if (n := len(p.read_text().splitlines())) >= 500
    }
    assert not too_long
