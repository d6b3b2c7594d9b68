"""The live page at `/`: static files from api/web/ (no build step) and the chart library from
the installed `plotly` package (served from site-packages, never copied into the repository).

    finsent api   # then open http://127.0.0.1:8000/
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

router = APIRouter(include_in_schema=False)
WEB = Path(__file__).resolve().parents[1] / "web"
FILES = {"app.js": "text/javascript", "style.css": "text/css"}


@cache
def plotly_js() -> Path | None:
    try:
        import plotly
    except ImportError:  # the page still shows alerts and items, without charts
        return None
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return path if path.exists() else None


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(WEB / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/static/vendor/plotly.min.js")
async def plotly() -> FileResponse:
    path = plotly_js()
    if path is None:
        raise HTTPException(404, "plotly is not installed (pip install plotly)")
    return FileResponse(path, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})


@router.get("/static/{name}")
async def static(name: str) -> FileResponse:
    if name not in FILES:  # a fixed list: no path from the request reaches the filesystem
        raise HTTPException(404, "not found")
    return FileResponse(WEB / name, media_type=FILES[name], headers={"Cache-Control": "no-cache"})
