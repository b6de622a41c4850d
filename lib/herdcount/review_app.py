"""The review's web application: a photo list, a deep-zoom photo view and a JSON API over
the review database (Starlette; served by uvicorn in :mod:`herdcount.commands.review`).

The photo is cut into 256-pixel tiles on demand, one zoom level per halving, as Leaflet's
``CRS.Simple`` asks, and each tile is cached on disk beside the database. Edits are JSON
POSTs; nothing else is written and nothing is uploaded. Where a token is set (a server that
others can reach), every request must carry it: as ``?token=`` once (the answer sets a
same-site cookie), as the cookie, or as an ``Authorization: Bearer`` header.
"""

from __future__ import annotations

import html
import json
import math
import secrets
import threading
from collections import OrderedDict
from importlib import resources

import numpy as np
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from herdcount import storage
from herdcount.imaging import decode_rgb, encode_jpeg
from herdcount.review_store import ReviewStore, StaleEdit

TILE = 256
COOKIE = "herdcount_review"
#: An edit is a few hundred bytes of JSON; anything larger is not one.
MAX_BODY = 16_384


def max_zoom(width: int, height: int) -> int:
    """The zoom level at which the photo is shown at full size (level 0: one tile)."""
    return max(0, math.ceil(math.log2(max(width, height) / TILE)))


def cut_tile(image: np.ndarray, zoom: int, x: int, y: int, *, top: int) -> np.ndarray | None:
    """Tile ``(x, y)`` of zoom level ``zoom`` of ``image`` (full size at level ``top``) as a
    ``TILE x TILE`` RGB array, padded dark beyond the photo; None for a tile outside it."""
    if zoom < 0 or zoom > top:
        return None
    step = TILE * 2 ** (top - zoom)
    height, width = image.shape[:2]
    r0, c0 = y * step, x * step
    if x < 0 or y < 0 or r0 >= height or c0 >= width:
        return None
    r1, c1 = min(r0 + step, height), min(c0 + step, width)
    size = (max(1, round((c1 - c0) * TILE / step)), max(1, round((r1 - r0) * TILE / step)))
    part = Image.fromarray(image[r0:r1, c0:c1]).resize(size, Image.Resampling.BOX)
    out = np.full((TILE, TILE, 3), 24, np.uint8)
    out[: size[1], : size[0]] = np.asarray(part)
    return out


class Photos:
    """Decoded photos, the last few kept: a reviewer pans one photo through many tiles."""

    def __init__(self, images: str, keep: int = 3):
        self.images = images
        self.keep = keep
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, file: str) -> np.ndarray:
        with self._lock:
            if file in self._cache:
                self._cache.move_to_end(file)
                return self._cache[file]
        path = storage.join(self.images, file)
        image = decode_rgb(storage.read_bytes(path), path)
        with self._lock:
            self._cache[file] = image
            while len(self._cache) > self.keep:
                self._cache.popitem(last=False)
        return image


def make_app(store: ReviewStore, *, token: str | None = None, images: str | None = None) -> Starlette:
    """The review application over ``store``; ``token``, where given, is asked of every request."""
    photos = Photos(images or store.meta["images"])
    tiles = store.path.parent / "tiles"
    classes = store.classes
    colours = json.loads(store.meta.get("colours", "[]"))

    def config(photo: str) -> dict:
        _, width, height = store.photo(photo)
        order = store.photo_ids()
        at = order.index(photo)
        return {
            "photo": photo,
            "width": width,
            "height": height,
            "max_zoom": max_zoom(width, height),
            "classes": classes,
            "colours": ["#{:02x}{:02x}{:02x}".format(*c) for c in colours],
            "next": order[at + 1] if at + 1 < len(order) else None,
            "previous": order[at - 1] if at > 0 else None,
        }

    async def index(request: Request) -> Response:
        return HTMLResponse(_list_page(store.photos(), classes))

    async def photo_page(request: Request) -> Response:
        photo = request.path_params["photo"]
        try:
            return HTMLResponse(_photo_page(config(photo)))
        except KeyError as exc:
            return _error(404, str(exc.args[0]))

    async def photo_list(request: Request) -> Response:
        return JSONResponse({"classes": classes, "photos": store.photos()})

    async def photo_state(request: Request) -> Response:
        try:
            return JSONResponse(store.state(request.path_params["photo"]).record(classes))
        except KeyError as exc:
            return _error(404, str(exc.args[0]))

    async def edit(request: Request) -> Response:
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        photo = request.path_params["photo"]
        try:
            if request.path_params["verb"] == "undo":
                state = store.undo(photo, str(body.get("reviewer", "")))
            else:
                state = store.edit(
                    photo,
                    str(body.get("reviewer", "")),
                    str(body.get("action", "")),
                    point=body.get("point"),
                    seen=body.get("seen"),
                    cls=body.get("class"),
                    row=body.get("row"),
                    col=body.get("col"),
                )
        except KeyError as exc:
            return _error(404, str(exc.args[0]))
        except StaleEdit as exc:
            return JSONResponse({"error": str(exc), "state": exc.state.record(classes)}, status_code=409)
        except ValueError as exc:
            return _error(400, str(exc))
        return JSONResponse(state.record(classes))

    def tile(request: Request) -> Response:
        p = request.path_params
        try:
            file, width, height = store.photo(p["photo"])
        except KeyError as exc:
            return _error(404, str(exc.args[0]))
        cached = tiles / _safe(p["photo"]) / str(p["z"]) / f"{p['x']}_{p['y']}.jpg"
        if cached.is_file():
            return Response(
                cached.read_bytes(), media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"}
            )
        cut = cut_tile(photos.get(file), p["z"], p["x"], p["y"], top=max_zoom(width, height))
        if cut is None:
            return _error(404, f"no tile {p['z']}/{p['x']}/{p['y']} of photo {p['photo']!r}")
        data = encode_jpeg(cut, quality=85)
        storage.write_bytes_atomic(cached, data)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    static = resources.files("herdcount") / "review_static"
    app = Starlette(
        routes=[
            Route("/", index),
            Route("/photo/{photo}", photo_page),
            Route("/api/photos", photo_list),
            Route("/api/photos/{photo}", photo_state),
            Route("/api/photos/{photo}/{verb:str}", edit, methods=["POST"]),
            Route("/tiles/{photo}/{z:int}/{x:int}/{y:int}.jpg", tile),
            Mount("/static", StaticFiles(directory=str(static)), name="static"),
        ]
    )
    if token is not None:
        app.add_middleware(_TokenMiddleware, token=token)
    return app


async def _json_body(request: Request) -> dict | Response:
    if request.path_params["verb"] not in ("edits", "undo"):
        return _error(404, f"no such action {request.path_params['verb']!r}")
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return _error(415, "edits are JSON (Content-Type: application/json); uploads are not accepted")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        return _error(413, f"an edit is at most {MAX_BODY} bytes")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        return _error(413, f"an edit is at most {MAX_BODY} bytes")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "the body is not JSON")
    return body if isinstance(body, dict) else _error(400, "the body must be a JSON object")


class _TokenMiddleware:
    """Refuses (401) any request without the token, before it reaches a route."""

    def __init__(self, app, token: str):
        self.app = app
        self.token = token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        given = request.query_params.get("token")
        header = request.headers.get("authorization", "")
        candidates = [
            given,
            request.cookies.get(COOKIE),
            header[7:] if header.startswith("Bearer ") else None,
        ]
        if not any(c is not None and secrets.compare_digest(c, self.token) for c in candidates):
            return await _error(401, "a valid token is needed (the one the server printed when it started)")(
                scope, receive, send
            )
        if given is not None:
            # The page's own requests (tiles, edits) then carry the token as a cookie.
            async def send_with_cookie(message):
                if message["type"] == "http.response.start":
                    cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                    message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
                await send(message)

            return await self.app(scope, receive, send_with_cookie)
        return await self.app(scope, receive, send)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _safe(photo: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in photo)


def _list_page(photos: list[dict], classes: list[str]) -> str:
    done = sum(1 for p in photos if p["done_by"])
    sampled = [p for p in photos if p["sampled"]]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in classes)
    rows = []
    for p in photos:
        cells = "".join(
            f"<td>{p['counts'][c]}<span class='model'> ({p['model_counts'].get(c, 0):.1f})</span></td>"
            for c in classes
        )
        state = (
            f"done by {html.escape(p['done_by'])}"
            if p["done_by"]
            else ("started" if p["events"] else "to do")
        )
        who = html.escape(", ".join(p["reviewers"]))
        rows.append(
            f"<tr class='{'done' if p['done_by'] else ''}' data-photo='{html.escape(p['id'])}'>"
            f"<td>{p['rank'] + 1}</td><td><a href='/photo/{html.escape(p['id'])}'>{html.escape(p['id'])}</a></td>"
            f"{cells}<td class='state'>{state}</td><td>{who}</td><td>{html.escape(p['reason'])}</td></tr>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>herdcount review</title>
<link rel="stylesheet" href="/static/review.css"></head>
<body class="list">
<h1>herdcount review</h1>
<p id="progress">{done} of {len(photos)} photos done; calibration sample: {sum(1 for p in sampled if p["done_by"])}
of {len(sampled)} done. Review the sample first, in its order: the survey's totals are corrected from it.
Counts are the reviewed points, with the model's count in brackets.</p>
<table id="photos"><thead><tr><th>#</th><th>photo</th>{head}<th>state</th><th>reviewers</th><th>why here</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
</body></html>"""


def _photo_page(config: dict) -> str:
    name = html.escape(config["photo"])
    buttons = "".join(
        f"<button class='cls' data-class='{html.escape(c)}' style='border-color:{config['colours'][k]}'>"
        f"{k + 1} {html.escape(c)} <span class='n'></span></button>"
        for k, c in enumerate(config["classes"])
    )
    payload = json.dumps(config).replace("<", "\\u003c")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>{name}: herdcount review</title>
<link rel="stylesheet" href="/static/leaflet.css"><link rel="stylesheet" href="/static/review.css"></head>
<body class="photo">
<header>
<a href="/">all photos</a> <strong id="photo-name">{name}</strong>
<label>reviewer <input id="reviewer" size="12" autocomplete="name"></label>
<span id="classes">{buttons}</span>
<button id="undo" title="z">undo</button> <button id="done" title="d">mark done</button>
<span id="state"></span>
<span id="message" role="status"></span>
<details><summary>keys</summary>click: add a point of the chosen class; 1-9: choose a class, or relabel the
selected point; a: add at the mouse; drag or arrows (shift: 10 px): move the selected point; Delete or x:
delete it; Esc: deselect; z: undo your last change; d: mark done (again: reopen); n / p: next / previous photo.</details>
</header>
<div id="map"></div>
<script id="review-config" type="application/json">{payload}</script>
<script src="/static/leaflet.js"></script><script src="/static/review.js"></script>
</body></html>"""


def new_token() -> str:
    """A token for a server that others can reach."""
    return secrets.token_urlsafe(24)
