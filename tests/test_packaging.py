"""environment.yml (conda users) and pyproject.toml (pip/uv, nox) describe the same deps."""

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_deps() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {d.replace(" ", "") for d in project["dependencies"] + project["optional-dependencies"]["test"]}


def _conda_pip_deps() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {d.replace(" ", "") for d in pip if not d.startswith("-e")}


def test_environment_yml_matches_pyproject():
    py, conda = _pyproject_deps(), _conda_pip_deps()
    assert py - conda == set(), f"in pyproject.toml but not environment.yml: {sorted(py - conda)}"
    assert conda - py == set(), f"in environment.yml but not pyproject.toml: {sorted(conda - py)}"


def test_environment_yml_python_matches_noxfile():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert f'PYTHON = "{python.split("=")[1]}"' in (ROOT / "noxfile.py").read_text()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    block = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]
    assert commands[0] == "python3 tools/run.py report", "the README's first command is the main job"
    assert commands[1] == "python3 tools/run.py tests", "the README's second command is the tests"
    assert ci.strip().splitlines()[-1].strip() == commands[1], "CI runs the README's test command"
