"""The whole local stack, once per test session, serving the small really-trained model."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from monitoring.review import Reviewer
from monitoring.review_web import WebReview, create_review_app
from scones.model_store import ModelStore
from service.endpoint import free_port
from service.local_stack import LocalStack
from tests.e2e.settle import quiet


@pytest.fixture(scope="package")  # stopped before other packages start stacks of their own (one per process)
def stack(model_store: ModelStore) -> Iterator[LocalStack]:
    with LocalStack(store=model_store) as running:
        yield running


@pytest.fixture(autouse=True)
def stack_quiet_after_each_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """The stack is shared: a test leaves it quiet, so the next one counts only its own runs (and a
    run that does not end fails the test that started it)."""
    yield
    if "stack" in request.fixturenames:
        quiet(request.getfixturevalue("stack"))


@pytest.fixture
def review_page(stack: LocalStack) -> Iterator[tuple[str, WebReview]]:
    """The review page of the stack's queue, served on a free loopback port; (URL, session)."""
    session = WebReview(Reviewer(stack.client("s3"), stack.client("sqs"), stack.resources.review_queue_url))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_review_app(session), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the review page did not start within 60 s"
    try:
        yield f"http://127.0.0.1:{port}/", session
    finally:
        server.should_exit = True
        thread.join(timeout=10)
