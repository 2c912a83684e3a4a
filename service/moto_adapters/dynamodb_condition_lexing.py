"""(speed) DynamoDB condition expressions are tokenized once per expression text, not on every request.

moto's `ConditionExpressionParser` (5.2.5) tokenizes a ConditionExpression character run by
character run with freshly built regular expressions, and PutItem parses its condition twice (to
validate the request, then to apply it). powertools Idempotency sends the same long condition
("attribute_not_exists(#id) OR #expiry < :now OR (...)") with every record written: a few percent
of the stack's CPU under load. Tokens depend on the text alone (names and values are substituted
in later steps), so `install()` keeps the token list per expression text, bounded, and gives each
parse its own deque of them. The tokens are immutable tuples whose (empty) child lists the later
steps only read; an expression that fails to tokenize raises each time, uncached.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable
from typing import Any

from service.moto_adapters._patching import PatchSet

MOTO_VERSION = "5.2.5"
MAX_EXPRESSIONS = 512

_patches = PatchSet("dynamodb_condition_lexing")
_cached: list[Any] = []  # the installed token cache (functools.lru_cache), for cache_info


def cached(original: Callable[[Any], deque[Any]]) -> Callable[[Any], deque[Any]]:
    from moto.dynamodb.comparisons import ConditionExpressionParser

    @functools.lru_cache(maxsize=MAX_EXPRESSIONS)
    def tokens_of(text: str) -> tuple[Any, ...]:  # tokens depend on the text alone
        return tuple(original(ConditionExpressionParser(text, None, None)))

    def _lex_condition_expression(parser: Any) -> deque[Any]:
        text = parser.condition_expression
        if not isinstance(text, str):
            return original(parser)
        return deque(tokens_of(text))

    _cached[:] = [tokens_of]
    return _lex_condition_expression


def install() -> None:
    from moto.dynamodb.comparisons import ConditionExpressionParser

    uninstall()
    original = ConditionExpressionParser._lex_condition_expression
    _patches.replace(ConditionExpressionParser, "_lex_condition_expression", cached(original))


def uninstall() -> None:
    _patches.restore()
    _cached.clear()


def is_installed() -> bool:
    return _patches.active


def cached_expressions() -> int:
    return _cached[0].cache_info().currsize if _cached else 0
