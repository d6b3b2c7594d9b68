"""Shared fixtures. The committed model is copied to a temp dir and its fp32 ONNX graph is
rebuilt there once per session (the graph is a build output, not a commit)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from models.runtime import DEFAULT_ARTIFACT  # noqa: E402


@pytest.fixture(scope="session")
def artifact(tmp_path_factory) -> Path:
    """A copy of the committed model with model.onnx (fp32, fused) and a fresh int8 graph."""
    from models.export import export

    d = tmp_path_factory.mktemp("artifact") / DEFAULT_ARTIFACT.name
    shutil.copytree(DEFAULT_ARTIFACT, d, ignore=shutil.ignore_patterns("model.onnx", "eval-*", "*.engine"))
    export(d, int8=True)
    return d


@pytest.fixture(scope="session")
def real_texts() -> list[str]:
    """Varied finance texts: the project's synthetic feed plus hand-written headlines/tweets."""
    from models.export import SAMPLE_TEXTS
    from stream.simulate import synthetic_texts

    return SAMPLE_TEXTS + sorted(set(synthetic_texts(3000, seed=11)))
