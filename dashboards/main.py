"""Write every finsent dashboard as sorted JSON into dashboards/generated/ (committed; a test
fails when it is stale), the folder Grafana's dashboard provider reads.

    python -m dashboards.main [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dashboards import alerts, market_overview, pipeline, ticker
from dashboards.common import to_json

GENERATED = Path(__file__).parent / "generated"
MODULES = {"market-overview": market_overview, "ticker": ticker, "alerts": alerts, "pipeline": pipeline}


def render() -> dict[str, str]:
    """File name → JSON text of every dashboard."""
    return {f"{name}.json": to_json(module.build()) for name, module in MODULES.items()}


def write(out: Path = GENERATED) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render().items():
        (out / name).write_text(text)
        paths.append(out / name)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=GENERATED)
    for path in write(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
