"""Run a nox session on a machine that has only Python: install nox and uv first if missing.

    python3 tools/run.py report [-- report options]    # e.g. -- --profile smoke
    python3 tools/run.py tests

Equivalent to ``python3 -m nox -s <session> -- <options>`` once nox and uv are installed
(with pip, for this user; on a system Python that forbids it, into it anyway, as CI does).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys


def _missing() -> list[str]:
    return [m for m in ("nox", "uv") if importlib.util.find_spec(m) is None]


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    session, rest = argv[0], argv[1:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    if _missing():
        env = {**os.environ, "PIP_BREAK_SYSTEM_PACKAGES": "1"}
        cmd = [sys.executable, "-m", "pip", "install", "-q", "nox>=2024.4", "uv>=0.4"]
        if subprocess.run(cmd, env=env).returncode != 0:
            print(f"could not install nox and uv ({' '.join(cmd)}); install them and run "
                  f"`python3 -m nox -s {session}`", file=sys.stderr)
            return 1
    return subprocess.run([sys.executable, "-m", "nox", "-s", session,
                           *(["--", *rest] if rest else [])]).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
