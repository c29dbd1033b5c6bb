"""Serves the measuring page and the stock players it loads (bench/g2g/node_modules, installed by
`npm ci` in bench/g2g) on 127.0.0.1; the stream itself comes from the origin's own URL."""

from __future__ import annotations

import subprocess
from pathlib import Path

from aiohttp import web

HERE = Path(__file__).resolve().parent
LIBS = {
    "hls.min.js": HERE / "node_modules/hls.js/dist/hls.min.js",
    "dash.all.min.js": HERE / "node_modules/dashjs/dist/modern/umd/dash.all.min.js",
}


def install_players() -> None:
    if all(p.is_file() for p in LIBS.values()):
        return
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"], cwd=HERE, check=True
    )


async def serve(port: int = 0, static: dict[str, Path] | None = None) -> tuple[web.AppRunner, str]:
    """``static``: more directories to serve, URL prefix -> directory (tests serve a stream this way)."""
    install_players()
    app = web.Application()
    for prefix, directory in (static or {}).items():
        app.router.add_static(prefix, directory)
    files = {
        "/page.html": HERE / "page.html",
        "/page.js": HERE / "page.js",
        **{f"/lib/{name}": path for name, path in LIBS.items()},
    }

    async def file(request: web.Request) -> web.FileResponse:
        return web.FileResponse(files[request.path])

    for route in files:
        app.router.add_get(route, file)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{bound}"
