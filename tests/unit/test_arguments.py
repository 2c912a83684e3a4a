"""The command-line value types: the edges they accept and the one-line refusals."""

from __future__ import annotations

import argparse
import re

import pytest

from service import arguments


@pytest.mark.parametrize("text", ["0", "0.85", "1"])
def test_probability_accepts_the_closed_unit_interval(text: str) -> None:
    assert arguments.probability(text) == float(text)


@pytest.mark.parametrize("text", ["-0.01", "1.5"])
def test_probability_refuses_outside_it(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=f"^{re.escape(text)} is not a number from 0 to 1$"):
        arguments.probability(text)


def test_at_least_names_the_minimum_and_what_is_counted() -> None:
    folds = arguments.at_least(2, "folds")
    assert folds("2") == 2
    with pytest.raises(argparse.ArgumentTypeError, match=r"^1: at least 2 folds needed$"):
        folds("1")


@pytest.mark.parametrize(
    ("text", "accepted"), [("0", True), ("65535", True), ("-1", False), ("65536", False)]
)
def test_port_range(text: str, accepted: bool) -> None:
    if accepted:
        assert arguments.port(text) == int(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="is not a port from 0 to 65535"):
            arguments.port(text)
