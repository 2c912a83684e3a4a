"""Command-line value types shared by `scones` and `training/`: each refuses a bad value in one line."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def probability(text: str) -> float:
    """A number from 0 to 1: a threshold, or a bar on accuracy, coverage or ECE."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a number from 0 to 1")
    return value


def percentage(text: str) -> int:
    """A whole percentage from 0 to 100 (of requests captured, ...)."""
    value = int(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text} is not a percentage from 0 to 100")
    return value


def at_least(minimum: int, what: str) -> Callable[[str], int]:
    """A whole number of `what` no smaller than `minimum`."""

    def count(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text}: at least {minimum} {what} needed")
        return value

    return count


def port(text: str) -> int:
    """A TCP port; 0 asks for any free one."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port from 0 to 65535")
    return value
