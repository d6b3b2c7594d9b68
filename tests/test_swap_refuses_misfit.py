"""Issue 17, item 6, at hot swap: a model whose version does not fit scored_event.model_version
(three chained feedback rounds make 77 characters) is refused by the worker's own loader, with
the reason in /health's model state; the model in use goes on scoring."""

import asyncio
from types import SimpleNamespace

from core.settings import Settings
from stream.app import load_scorer
from stream.hotswap import worker_swap
from tests.conftest import SHIPPED_VERSION, swap_models_dir

LONG = "finsent-minilm-v2+fb20260101-0a1b2c3d+fb20260102-4e5f6a7b+fb20260103-8c9d0e1f"


def test_a_77_character_version_is_refused_at_swap_and_the_old_model_stays(tmp_path):
    assert len(LONG) == 77
    models = swap_models_dir(tmp_path, LONG)
    settings = Settings(_env_file=None, model_dir=models, ort_threads=1)
    holder = SimpleNamespace(scorer=load_scorer(settings))
    swap = worker_swap(models, holder, lambda d: load_scorer(settings, d))
    (models / "current").write_text("v2")
    assert not asyncio.run(swap.poll())  # swapped in before, and every row then refused by Postgres
    assert holder.scorer.version == SHIPPED_VERSION
    assert "version is 77 characters" in swap.state()["swap_error"]
    assert holder.scorer.predict(["Acme shares fall"])[0].model_version == SHIPPED_VERSION
