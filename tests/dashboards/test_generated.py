"""The committed dashboards/generated/*.json equal a fresh build (stale JSON fails: run
`python -m dashboards.main`), with stable unique uids, unique panel ids and known datasources.

    .venv/bin/python -m pytest tests/dashboards/test_generated.py -q
"""

from __future__ import annotations

import json

from dashboards.main import GENERATED, MODULES, render
from tests.dashboards.conftest import dashboards

UIDS = {"market-overview": "finsent-market-overview", "ticker": "finsent-ticker", "alerts": "finsent-alerts",
        "pipeline": "finsent-pipeline"}
DATASOURCES = {"finsent-postgres", "finsent-prometheus"}


def test_generated_json_is_fresh():
    fresh = render()
    committed = {p.name: p.read_text() for p in GENERATED.glob("*.json")}
    assert sorted(committed) == sorted(fresh)
    stale = [name for name, text in fresh.items() if committed[name] != text]
    assert not stale, f"stale: {stale}; run `python -m dashboards.main`"


def test_render_is_deterministic_and_sorted():
    first, second = render(), render()
    assert first == second
    for text in first.values():
        assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"


def test_uids_are_stable():
    assert {name: json.loads(text)["uid"] for name, text in render().items()} == {f"{k}.json": v for k, v in UIDS.items()}
    assert set(MODULES) == set(UIDS)


def walk(obj):
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from walk(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from walk(v)


def test_panels_have_ids_targets_and_known_datasources():
    for d in dashboards():
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), d["uid"]
        assert all(p.get("targets") for p in d["panels"]), d["uid"]
        refs = {o["uid"] for o in walk(d) if "type" in o and "uid" in o and str(o["uid"]).startswith("finsent-")
                and o is not d}
        assert refs <= DATASOURCES, refs
        assert all(p["gridPos"]["w"] <= 24 for p in d["panels"])


def test_provisioned_datasource_uids_match():
    import yaml

    prov = yaml.safe_load((GENERATED.parent / "provisioning" / "datasources" / "finsent.yml").read_text())
    assert {ds["uid"] for ds in prov["datasources"]} == DATASOURCES
    assert {ds["type"] for ds in prov["datasources"]} == {"grafana-postgresql-datasource", "prometheus"}
