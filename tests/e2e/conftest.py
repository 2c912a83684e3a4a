"""The whole local stack, once per test session, serving the small really-trained model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scones.model_store import ModelStore
from service.local_stack import LocalStack


@pytest.fixture(scope="session")
def stack(model_store: ModelStore) -> Iterator[LocalStack]:
    with LocalStack(store=model_store) as running:
        yield running
