"""The review page in a real headless browser (Debian's Chromium, driven by Playwright): a person's clicks
label every queued item, and the page ends on the empty queue."""

from __future__ import annotations

import json
import os
import shutil

from monitoring.review_web import WebReview
from scones.objects import ObjectRef, label_key
from service.local_stack import LocalStack
from tests.e2e.test_review import queue_for_review
from training.staging import StagedDataset

# Chromium as the machine's probe starts it: no sandbox as root, nothing reaching for the internet.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    found = os.environ.get("SCONES_BROWSER") or shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "the browser test needs Chromium: `make test` installs Debian's (or set SCONES_BROWSER)"
    return found


def test_a_reviewer_clicks_through_the_queue(
    stack: LocalStack, staged: StagedDataset, review_page: tuple[str, WebReview]
) -> None:
    from playwright.sync_api import sync_playwright

    truth = queue_for_review(stack, staged, per_class=2)
    url, session = review_page
    clicked = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium(), headless=True, args=CHROMIUM_FLAGS, timeout=120_000
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)  # a loaded CI machine; the defaults are 30 s
            page.goto(url)
            while page.locator("#key").count():
                key = page.locator("#key").inner_text()
                image = page.locator("#image")
                assert image.evaluate("img => img.complete && img.naturalWidth > 0"), "the image shows"
                assert "bicycle" in page.locator("#probabilities").inner_text()
                with page.expect_navigation():
                    page.click(f"#label-{truth[key]}")
                clicked[key] = truth[key]
                assert len(clicked) <= len(truth), "no item comes back once labeled"
            assert page.locator("#empty").is_visible()
            assert f"{len(truth)} labeled" in page.locator("#tally").inner_text()
        finally:
            browser.close()
    assert clicked == truth and session.labeled == len(truth)
    s3, bucket = stack.client("s3"), stack.resources.bucket
    for key, label in truth.items():
        obj = ObjectRef(bucket, key, s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"'))
        assert json.loads(s3.get_object(Bucket=bucket, Key=label_key(obj))["Body"].read())["label"] == label
