"""A served model says when this Pillow is not the one it was trained with: its pixels may differ."""

from __future__ import annotations

import logging

import PIL
import pytest

from scones.inference import warn_if_preprocessing_differs
from scones.model_metadata import ModelMetadata


def metadata(**environment: str) -> ModelMetadata:
    return ModelMetadata(
        version="v1",
        input_size=128,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        architecture="test",
        created_at="2026-11-24T00:00:00+00:00",
        training_environment=environment,
    )


def test_another_pillow_is_a_warning_and_the_same_or_unknown_one_is_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="scones.inference"):
        assert warn_if_preprocessing_differs(metadata(pillow="9.0.0")) is True
        assert warn_if_preprocessing_differs(metadata(pillow=PIL.__version__)) is False
        assert warn_if_preprocessing_differs(metadata()) is False
    assert [record.getMessage() for record in caplog.records] == [
        f"model v1 was trained with Pillow 9.0.0, this is Pillow {PIL.__version__}: "
        "preprocessing may differ slightly"
    ]
