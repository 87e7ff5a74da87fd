"""Sessions: ``nox -s report`` (the main job), ``tests``, ``bench``, ``lint``, ``explorer``.

Every session builds its own virtualenv with uv (torch + torchvision from the registry
run fine on a CPU). System packages the project needs (the offline Fashion-MNIST and,
for the browser test, Chromium) are installed with apt-get when missing and possible.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nox

# uv verifies TLS against the system's certificate store (as pip does), so a machine whose
# registry access goes through its own certificate authority works without extra setup
os.environ.setdefault("UV_NATIVE_TLS", "true")
nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

PYTHON = "3.11"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def _apt_install(session: nox.Session, packages: list[str]) -> None:
    """Install Debian packages when we are root and apt-get exists; otherwise say how."""
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("apt-get") is None:
        session.warn(f"cannot install {packages} (needs root and apt-get); install them by hand")
        return
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    if subprocess.run(cmd, env={**os.environ, **env}, capture_output=True).returncode != 0:
        session.run("apt-get", "update", "-q", external=True, env=env)
        session.run(*cmd, external=True, env=env)


def _system_data(session: nox.Session) -> None:
    if not (FASHION_MNIST / "train-images-idx3-ubyte.gz").exists():
        _apt_install(session, ["dataset-fashion-mnist"])


def _browser(session: nox.Session) -> None:
    if shutil.which("chromium") is None:
        _apt_install(session, ["chromium"])


@nox.session(python=PYTHON)
def report(session: nox.Session) -> None:
    """Regenerate the whole report into reports/ (``-- --profile smoke|default|paper``)."""
    _system_data(session)
    session.install("-e", ".")
    session.run("python", "-m", "rtstudy.report", *session.posargs)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite (smoke-profile notebooks included; the browser test needs Chromium)."""
    _system_data(session)
    _browser(session)
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *(session.posargs or ["-q", "-n", "2"]))


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Speed ratios of DESIGN.md §5 -> reports/bench.json (printed too)."""
    _system_data(session)
    session.install("-e", ".[test]")
    session.run("python", "-m", "rtstudy.bench", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff, and every notebook in step with its jupytext twin."""
    session.install("ruff>=0.5", "jupytext>=1.16")
    session.run("ruff", "check", "rtstudy", "tests", "noxfile.py")
    session.run("python", "-m", "rtstudy.notebooks_sync", "--check", silent=False)


@nox.session(python=PYTHON)
def explorer(session: nox.Session) -> None:
    """The mask explorer as a standalone page on http://127.0.0.1:8866 (Voilà)."""
    _system_data(session)
    session.install("-e", ".")
    session.run("python", "-m", "rtstudy.explorer.server", *session.posargs)
