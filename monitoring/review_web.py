"""`scones review --web`: the review queue as a small local web page (image, probabilities, three buttons).

The page shows one queued item at a time; a button posts the label, which is stored exactly as the
terminal review stores it (`monitoring.review.Reviewer`: conditional put, image copied, message
deleted after). "Skip" leaves the item for later. Served by uvicorn on 127.0.0.1.

A label is accepted only from this page: the form carries the session's secret token (another site
cannot read it, so it cannot forge the post) and the `Host` must be the loopback address the page is
served on (a rebound DNS name is refused); and only for the item the page showed (a second tab or a
page reloaded from history gets 409 instead of labeling whatever item is current now).
"""

from __future__ import annotations

import base64
import html
import secrets
import threading
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from monitoring.review import LABEL_CLASSES, Reviewer, ReviewItem
from scones.labels import LABELS

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
PREVIEW_SIDE = 512


def _on_loopback(request: Request) -> bool:
    """The `Host` names the loopback address: a page on another site that rebinds its name to
    127.0.0.1 (DNS rebinding) is refused, on every route (the page shows the token and the uploads)."""
    return request.headers.get("host", "").rsplit(":", 1)[0].strip("[]") in LOOPBACK_NAMES


_NOT_LOOPBACK = "this page answers on the loopback address only"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Scones Unlimited review</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 40em; }}
img {{ width: 256px; height: 256px; image-rendering: pixelated; border: 1px solid #ccc; }}
button {{ font-size: 1.1em; margin: 0.3em; padding: 0.4em 1em; }}
</style></head><body>
<h1>Review</h1>
<p id="tally">{tally}</p>
{body}
</body></html>
"""


class WebReview:
    """One reviewer's session behind the page: the item on screen, and what has been done."""

    def __init__(self, reviewer: Reviewer) -> None:
        self.reviewer = reviewer
        self.current: ReviewItem | None = None
        self.labeled = 0
        self.skipped = 0
        self.token = secrets.token_urlsafe(32)  # in the page's form; a post without it is refused
        self._lock = threading.Lock()

    def next_item(self) -> ReviewItem | None:
        with self._lock:
            if self.current is None:
                self.current = next(self.reviewer.items(limit=1), None)
            return self.current

    def answer(self, label: str, shown: str) -> bool:
        """Label (or skip) the item on screen, if `shown` (its receipt handle) is that item; else False."""
        with self._lock:
            if self.current is None or not secrets.compare_digest(self.current.receipt_handle, shown):
                return False
            item, self.current = self.current, None
        if label == "skip":
            self.reviewer.skip(item)
            self.skipped += 1
        elif self.reviewer.store(item, label):
            self.labeled += 1
        return True

    def image_uri(self, item: ReviewItem) -> str:
        """The reviewed version, at most PREVIEW_SIDE px on a side (a 64 MP upload would make a page of
        hundreds of MB); "" when it cannot be shown."""
        from scones.preprocessing import ImageRejected, preview_png

        data = self.reviewer.image(item)
        if data is None:
            return ""
        try:
            png = preview_png(data, PREVIEW_SIDE)
        except (ImageRejected, OSError):
            return ""
        return "data:image/png;base64," + base64.b64encode(png).decode()


def create_review_app(session: WebReview) -> Starlette:
    async def page(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        if not _on_loopback(request):
            return HTMLResponse(_NOT_LOOPBACK, status_code=403)

        item = await run_in_threadpool(session.next_item)
        tally = f"{session.labeled} labeled, {session.skipped} skipped in this session"
        if item is None:
            return HTMLResponse(PAGE.format(tally=tally, body='<p id="empty">The review queue is empty.</p>'))
        record = item.record
        probabilities = record.get("probabilities") or {}
        rows = "".join(
            f"<tr><td>{name}</td><td>{probabilities.get(name, 0):.3f}</td></tr>" for name in LABELS
        )
        image = await run_in_threadpool(session.image_uri, item)
        buttons = "".join(
            f'<button type="submit" name="label" value="{label}" id="label-{label}">{label}</button>'
            for label in (*LABEL_CLASSES, "skip")
        )
        body = (
            f'<p id="key">{html.escape(record["key"])}</p>'
            + (
                f'<img id="image" src="{image}" alt="the upload">'
                if image
                else "<p>(the upload cannot be shown)</p>"
            )
            + f"<table id='probabilities'>{rows}</table>"
            + f"<p>model {html.escape(str(record.get('model_version')))}"
            + f" says {html.escape(str(record.get('label')))} at {record.get('confidence')}</p>"
            + '<form method="post" action="/label">'
            + f'<input type="hidden" name="token" value="{html.escape(session.token)}">'
            + f'<input type="hidden" name="item" value="{html.escape(item.receipt_handle)}">'
            + f"{buttons}</form>"
        )
        return HTMLResponse(PAGE.format(tally=tally, body=body))

    async def label(request: Request) -> Response:
        from urllib.parse import parse_qs

        from starlette.concurrency import run_in_threadpool

        if not _on_loopback(request):
            return HTMLResponse(_NOT_LOOPBACK, status_code=403)
        form = parse_qs((await request.body()).decode(errors="replace"))  # a plain urlencoded form
        if not secrets.compare_digest(form.get("token", [""])[0], session.token):
            return HTMLResponse("labels are taken from this page's own form only", status_code=403)
        choice = form.get("label", [""])[0]
        if choice not in (*LABEL_CLASSES, "skip"):
            return HTMLResponse(f"unknown label {html.escape(choice)}", status_code=400)
        if not await run_in_threadpool(session.answer, choice, form.get("item", [""])[0]):
            return HTMLResponse(
                'that item was answered already or is no longer on screen: <a href="/">next item</a>',
                status_code=409,
            )
        return RedirectResponse("/", status_code=303)

    return Starlette(routes=[Route("/", page, methods=["GET"]), Route("/label", label, methods=["POST"])])


def serve_review(reviewer: Reviewer, host: str = "127.0.0.1", port: int = 8765) -> Any:
    """Serve the page in the foreground until Ctrl-C; skipped items go back to the queue afterwards."""
    import uvicorn

    session = WebReview(reviewer)
    try:
        uvicorn.run(create_review_app(session), host=host, port=port, log_level="warning")
    finally:
        if session.current is not None:
            reviewer.skip(session.current)
        reviewer.release()
    return session
