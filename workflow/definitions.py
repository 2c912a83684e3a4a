"""Load the workflow definitions (ASL, event pattern) and fill in their `${Placeholders}`.

The files are the single source of truth: the local stack and the SAM template
(`DefinitionSubstitutions`) substitute the same placeholders into the same bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

WORKFLOW_DIR: Final = Path(__file__).resolve().parent
STATE_MACHINE_FILE: Final = WORKFLOW_DIR / "state_machine.asl.json"
EVENT_PATTERN_FILE: Final = WORKFLOW_DIR / "event_pattern.json"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9]+)\}")


def placeholders(text: str) -> set[str]:
    return set(_PLACEHOLDER.findall(text))


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Fill every `${Name}`; a missing value is an error, never an empty string."""
    missing = placeholders(text) - values.keys()
    if missing:
        raise KeyError(f"no value for {', '.join(sorted(missing))}")
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


def state_machine_definition(values: Mapping[str, str]) -> str:
    """The ASL with ARNs and queue URLs filled in, ready for CreateStateMachine."""
    return substitute(STATE_MACHINE_FILE.read_text(), values)


def event_pattern(bucket_name: str) -> dict[str, Any]:
    """The EventBridge rule pattern: S3 Object Created in the data bucket, keys under inbox/."""
    pattern: dict[str, Any] = json.loads(
        substitute(EVENT_PATTERN_FILE.read_text(), {"BucketName": bucket_name})
    )
    return pattern
