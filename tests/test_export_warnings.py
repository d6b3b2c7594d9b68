"""`finsent export` (which `make setup`, and so a first `make demo`, runs) prints no warning it
always prints and that its parity check answers, and still prints any other warning."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

from torch.jit import TracerWarning

from models.export import expected_export_warnings
from models.runtime import DEFAULT_ARTIFACT

ROOT = Path(__file__).resolve().parents[1]
QUANTIZE = "/x/site-packages/onnxruntime/quantization/quantize.py"


def _warn(category, message: str, module: str) -> None:
    warnings.warn_explicit(message, category, f"/x/{module.replace('.', '/')}.py", 1, module=module)


def _log(pathname: str, msg: str) -> logging.LogRecord:
    return logging.LogRecord("root", logging.WARNING, pathname, 1, msg, None, None)


def test_only_the_expected_warnings_are_hidden():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with expected_export_warnings():
            _warn(TracerWarning, "Converting a tensor to a Python boolean might cause the trace to be incorrect.",
                  "transformers.masking_utils")
            _warn(UserWarning, "Exporting aten::index operator of advanced indexing in opset 17 is achieved by …",
                  "torch.onnx._internal.torchscript_exporter.symbolic_opset11")
            # the same kinds from elsewhere, and anything else, still show
            _warn(TracerWarning, "Converting a tensor to a Python boolean", "models.network")
            _warn(UserWarning, "Exporting aten::index operator", "models.network")
            _warn(UserWarning, "Constant folding failed", "torch.onnx.utils")
            root = logging.getLogger()
            hidden = root.filter(_log(QUANTIZE, "Please consider to run pre-processing before quantization. Refer…"))
            hidden_too = root.filter(_log(QUANTIZE, "Please consider pre-processing before quantization. See …"))
            other_log = root.filter(_log(QUANTIZE, "Quantization parameters for tensor x not specified"))
            same_text_elsewhere = root.filter(_log("/x/mine.py", "Please consider to run pre-processing before"))
        after = root.filter(_log(QUANTIZE, "Please consider to run pre-processing before quantization."))
    assert [(w.category, str(w.message)[:30], w.filename) for w in seen] == [
        (TracerWarning, "Converting a tensor to a Pytho", "/x/models/network.py"),
        (UserWarning, "Exporting aten::index operator", "/x/models/network.py"),
        (UserWarning, "Constant folding failed", "/x/torch/onnx/utils.py")]
    assert (hidden, hidden_too, other_log, same_text_elsewhere, after) == (False, False, True, True, True)


def test_export_of_the_shipped_model_prints_no_warning(tmp_path):
    """The real export, as `make setup` runs it, on a copy of the committed model: clean output,
    and the parity lines that answer the hidden warnings are there."""
    d = tmp_path / DEFAULT_ARTIFACT.name
    shutil.copytree(DEFAULT_ARTIFACT, d, ignore=shutil.ignore_patterns("*.onnx", "eval-*", "*.engine"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONWARNINGS")}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", COLUMNS="200")
    out = subprocess.run([sys.executable, "-m", "finsent.cli", "export", "--model", str(d)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    for word in ("Warning", "WARNING", "warn"):
        assert word not in text, text
    assert text.count("parity vs torch") == 2, text
    assert (d / "model.int8.onnx").exists() and (d / "model.onnx").exists()
