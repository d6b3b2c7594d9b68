"""ModelSwap: the worker follows MODEL_DIR/current; a model that fails to load is refused and
the one in use stays. (The mid-stream swap with the real broker and Postgres is in
tests/integration/test_hotswap.py.)"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from models.runtime import resolve_artifact
from models.hotswap import ModelSwap


def artifact(root: Path, name: str) -> Path:
    d = root / name
    d.mkdir()
    (d / "finsent.json").write_text(json.dumps({"version": name}))
    return d


class Fake:
    def __init__(self, version):
        self.version = version


def load(directory: Path) -> Fake:
    meta = json.loads((directory / "finsent.json").read_text())
    if meta["version"].startswith("broken"):
        raise RuntimeError("model check failed")
    return Fake(meta["version"])


def test_resolve_artifact_follows_a_text_pointer_a_symlink_or_takes_the_directory(tmp_path):
    a, b = artifact(tmp_path, "v1"), artifact(tmp_path, "v2")
    assert resolve_artifact(a) == a  # an artifact directory as it is
    (tmp_path / "current").write_text("v1\n")
    assert resolve_artifact(tmp_path) == a
    (tmp_path / "current").write_text(str(b))  # an absolute path
    assert resolve_artifact(tmp_path) == b
    (tmp_path / "current").unlink()
    (tmp_path / "current").symlink_to(b)
    assert resolve_artifact(tmp_path) == b
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "current").write_text("  ")
    with pytest.raises(FileNotFoundError, match="empty"):
        resolve_artifact(empty)


def test_swaps_when_current_moves_refuses_a_broken_model_and_keeps_the_one_in_use(tmp_path):
    artifact(tmp_path, "v1"), artifact(tmp_path, "v2"), artifact(tmp_path, "broken-v3")
    (tmp_path / "current").write_text("v1")
    holder = SimpleNamespace(scorer=Fake("v1"))
    swap = ModelSwap(tmp_path, holder, load)
    assert not asyncio.run(swap.poll())  # nothing changed
    (tmp_path / "current").write_text("v2")
    assert asyncio.run(swap.poll()) and holder.scorer.version == "v2"
    assert swap.state() == {"version": "v2", "dir": str((tmp_path / "v2").resolve()), "swap_error": None}
    (tmp_path / "current").write_text("broken-v3")
    assert not asyncio.run(swap.poll())
    assert holder.scorer.version == "v2" and "model check failed" in swap.state()["swap_error"]
    (tmp_path / "current").write_text("nowhere")  # a pointer to nothing: refused the same way
    assert not asyncio.run(swap.poll()) and holder.scorer.version == "v2"
    (tmp_path / "current").write_text("v1")  # a good model again clears the error
    assert asyncio.run(swap.poll()) and holder.scorer.version == "v1" and swap.state()["swap_error"] is None
