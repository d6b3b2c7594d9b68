"""The shape of models/ (issue 21): no import circles, serving never imports training, the
artifact module is torch- and numpy-free, and one setting names the shared data folder."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
SERVING = {"artifact", "runtime", "tensorrt", "explain", "entity_scores", "hotswap", "predict_file"}
TRAINING = {"train", "training", "distill", "teacher", "feedback", "export", "evaluate", "entity_sentiment"}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """models.* modules a file imports anywhere (top level and inside functions); `from package
    import submodule` counts as the submodule, not the package."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("models"):
            subs = {f"{node.module}.{a.name}" for a in node.names} & modules
            out |= subs
            if len(subs) < len(node.names):
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("models"))
    return out


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in MODELS.rglob("*.py")}
    return {m: {i for i in imports_of(p, set(files)) if i in files and i != m} for m, p in files.items()}


def cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(g[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(g):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_models_has_no_import_circle():
    assert cycle(graph()) is None


def test_serving_never_imports_training():
    g = graph()
    bad = {m: sorted(n for n in g[f"models.{m}"] if n.split(".")[1] in TRAINING) for m in SERVING}
    assert not any(bad.values()), bad


def test_artifact_module_loads_neither_torch_nor_numpy():
    code = ("import sys; from models.artifact import Meta, DEFAULT_ARTIFACT; Meta.load(DEFAULT_ARTIFACT); "
            "print(sorted(m for m in ('torch', 'numpy', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture
def data_dir_env(monkeypatch, tmp_path):
    from core.settings import get_settings

    monkeypatch.setenv("FINSENT_DATA_DIR", str(tmp_path / "elsewhere"))
    get_settings.cache_clear()
    yield tmp_path / "elsewhere"
    get_settings.cache_clear()


def test_data_dir_default_is_shared_data_beside_the_repository(monkeypatch):
    from core.settings import Settings

    monkeypatch.delenv("FINSENT_DATA_DIR", raising=False)
    assert Settings().data_dir == ROOT.parent / "shared" / "data"


def test_one_setting_moves_every_training_default(data_dir_env):
    from finsent.cli import _data_dir
    from models.entity_sentiment import TrainConfig as EntityConfig
    from models.feedback import FeedbackConfig
    from models.teacher import TeacherConfig
    from models.training import TrainConfig

    assert Path(TrainConfig(output="x").data_dir) == data_dir_env
    assert Path(TeacherConfig(output="x").data_dir) == data_dir_env
    assert Path(FeedbackConfig(base="b", feedback="f", output="x").data_dir) == data_dir_env
    assert Path(EntityConfig().data) == data_dir_env
    assert _data_dir(None) == data_dir_env
    assert _data_dir(Path("given")) == Path("given")
