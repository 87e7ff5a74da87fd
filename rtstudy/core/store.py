"""A content-addressed artifact store: every result lives under the hash of its config.

An artifact is a directory ``<root>/<kind>/<hash>/`` holding ``meta.json`` (the full
config, metrics, timings) and any number of ``<name>.safetensors`` files. It is built
in a temporary sibling directory and renamed into place, so it exists whole or not at
all; a file lock makes two processes asking for the same artifact compute it once, and
whoever takes the lock removes the temporary directories a killed builder left behind.
``$RTSTUDY_READ_ONLY`` (comma-separated kinds) forbids computing those kinds in this
process: the report renders its notebooks that way, after the plan built everything.
Nothing here unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

SCHEMA_VERSION = 1  # bump when a change makes stored results incomparable


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no spaces: the same config always gives the same text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, (Path, torch.device, torch.dtype)):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable: {obj!r}")


def config_hash(kind: str, config: dict) -> str:
    """16 hex digits of sha256 over the kind, the schema version and the config."""
    text = canonical_json({"kind": kind, "schema": SCHEMA_VERSION, "config": config})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a report page must be readable by a web server
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    """Save tensors as safetensors atomically (contiguous CPU copies; bools stay bool)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        data = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        meta = {k: str(v) for k, v in (metadata or {}).items()}
        save_file(data, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load a safetensors file; a missing, truncated or corrupt file is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tensor file {path} does not exist")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ValueError(
            f"tensor file {path} is truncated or corrupt ({exc}); delete it to recompute"
        ) from exc


@dataclass
class Artifact:
    """A finished artifact: its directory and its ``meta.json`` content."""

    kind: str
    key: str
    path: Path
    meta: dict = field(default_factory=dict)

    @property
    def config(self) -> dict:
        return self.meta["config"]

    @property
    def metrics(self) -> dict:
        return self.meta.get("metrics", {})

    def tensors(self, name: str, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        return load_tensors(self.path / f"{name}.safetensors", device)


class Builder:
    """What a compute function fills in: tensors to save and metrics to record."""

    def __init__(self, tmpdir: Path):
        self.dir = tmpdir
        self.metrics: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}

    def save(self, name: str, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
        save_tensors(self.dir / f"{name}.safetensors", tensors, metadata)


READ_ONLY_ENV = "RTSTUDY_READ_ONLY"


class NotInStore(RuntimeError):
    """An artifact this process may only read (``$RTSTUDY_READ_ONLY``) is not in the store."""


def read_only_kinds() -> set[str]:
    return {k.strip() for k in os.environ.get(READ_ONLY_ENV, "").split(",") if k.strip()}


class Store:
    """Artifacts under ``root`` (default ``$RTSTUDY_STORE`` or ``~/.cache/rtstudy/artifacts``)."""

    def __init__(self, root: str | Path | None = None):
        root = root or os.environ.get("RTSTUDY_STORE") or "~/.cache/rtstudy/artifacts"
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def path(self, kind: str, config: dict) -> Path:
        return self.root / kind / config_hash(kind, config)

    def folder(self, kind: str, key: str) -> Path:
        """The folder of the artifact of this kind and key (``Desc.key``), stored or not."""
        return self.root / kind / key

    def holds(self, kind: str, key: str) -> bool:
        """Whether the finished artifact of this kind and key is stored (cheaper than ``get``)."""
        return (self.folder(kind, key) / "meta.json").is_file()

    def get(self, kind: str, config: dict) -> Artifact | None:
        """The finished artifact for this config, or ``None``."""
        path = self.path(kind, config)
        meta_file = path / "meta.json"
        if not meta_file.is_file():
            return None
        try:
            meta = json.loads(meta_file.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{meta_file} is corrupt ({exc}); delete {path} to recompute") from exc
        return Artifact(kind, path.name, path, meta)

    def get_or_create(
        self, kind: str, config: dict, compute: Callable[[Builder], None]
    ) -> Artifact:
        """Return the stored artifact, or run ``compute`` once (under a lock) and store it."""
        found = self.get(kind, config)
        if found is not None:
            return found
        final = self.path(kind, config)
        if kind in read_only_kinds():
            raise NotInStore(f"{kind} artifact {final.name} ({canonical_json(config)[:200]}) is not in "
                             f"the store, and {READ_ONLY_ENV} forbids computing {kind} artifacts here: "
                             f"plan it (rtstudy.engine) before reading it")
        final.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(final) + ".lock"):
            found = self.get(kind, config)  # another process may have finished meanwhile
            if found is not None:
                return found
            for stale in final.parent.glob(f".{final.name}.tmp-*"):  # a builder died holding the lock
                shutil.rmtree(stale, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
            try:
                builder = Builder(tmp)
                start = time.perf_counter()
                compute(builder)
                meta = {
                    "kind": kind,
                    "key": final.name,
                    "schema": SCHEMA_VERSION,
                    "config": json.loads(canonical_json(config)),
                    "metrics": json.loads(canonical_json(builder.metrics)),
                    **json.loads(canonical_json(builder.extra)),
                    "seconds": round(time.perf_counter() - start, 3),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
                atomic_write_text(tmp / "meta.json", json.dumps(meta, indent=1, sort_keys=True))
                if final.exists():  # a broken leftover without meta.json
                    shutil.rmtree(final)
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return Artifact(kind, final.name, final, meta)

    def list(self, kind: str) -> list[Artifact]:
        """Every finished artifact of a kind (unordered)."""
        out = []
        for meta_file in sorted((self.root / kind).glob("*/meta.json")):
            if meta_file.parent.name.startswith("."):  # a build in progress or a killed one
                continue
            try:
                meta = json.loads(meta_file.read_text())
            except json.JSONDecodeError:
                continue
            out.append(Artifact(kind, meta_file.parent.name, meta_file.parent, meta))
        return out
