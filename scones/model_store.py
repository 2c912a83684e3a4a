"""The local model store: versioned model folders and the pointer to the one the local endpoint serves."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Final

import platformdirs

from scones.model_metadata import METADATA_FILE, ModelMetadata, check_model_file

CURRENT_FILE = "CURRENT"
HISTORY_FILE = "HISTORY"


def default_home() -> Path:
    """Where the embedded default keeps its state: $SCONES_HOME, else the user's data folder."""
    configured = os.environ.get("SCONES_HOME")
    return Path(configured) if configured else Path(platformdirs.user_data_dir("scones-unlimited"))


class NoModelError(LookupError):
    """No model has been published to the store yet."""


PROMOTED: Final = "promoted"
ROLLED_BACK_TO: Final = "rolled-back-to"


class ModelStore:
    """`<root>/<version>/{model.onnx,metadata.json}` plus `<root>/CURRENT` naming the served version."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def default(cls) -> ModelStore:
        return cls(default_home() / "models")

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(  # a `.`-folder is a publish in progress (or one a crash left)
            p.name
            for p in self.root.iterdir()
            if not p.name.startswith(".") and (p / METADATA_FILE).is_file()
        )

    def path(self, version: str) -> Path:
        if not version or "/" in version or version.startswith("."):
            raise ValueError(f"not a model version: {version!r}")
        return self.root / version

    def current_version(self) -> str:
        try:
            version = (self.root / CURRENT_FILE).read_text().strip()
        except FileNotFoundError:
            raise NoModelError(f"no model is published in {self.root}; run `scones train`") from None
        return version

    def current_path(self) -> Path:
        return self.path(self.current_version())

    def publish(self, model_dir: Path, *, make_current: bool = True) -> Path:
        """Copy an exported model folder in under its version; optionally make it the served one."""
        version = ModelMetadata.read(model_dir).version
        target = self.path(version)
        if not target.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=self.root))
            try:
                for item in model_dir.iterdir():
                    if item.is_file():
                        shutil.copy2(item, staging / item.name)
                check_model_file(staging)
                staging.rename(target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        if make_current:
            self.set_current(version)
        return target

    def set_current(self, version: str) -> None:
        """Serve `version` from now on (the served one before it is remembered for `rollback`)."""
        self._switch(version, PROMOTED)

    def _switch(self, version: str, kind: str) -> None:
        if not (self.path(version) / METADATA_FILE).is_file():
            raise NoModelError(f"model version {version!r} is not in {self.root}")
        try:
            previous: str | None = self.current_version()
        except NoModelError:
            previous = None
        if previous == version:
            return
        pointer = self.root / CURRENT_FILE
        temporary = pointer.with_name(f".{CURRENT_FILE}.{os.getpid()}")
        temporary.write_text(version + "\n")
        temporary.replace(pointer)  # atomic: readers see the old or the new version, never half
        with (self.root / HISTORY_FILE).open("a") as history:
            history.write(version + ("" if kind == PROMOTED else f" {kind}") + "\n")

    def _entries(self) -> list[tuple[str, str]]:
        """(version, how it became current) per `HISTORY` line: `v3`, or `v2 rolled-back-to`."""
        try:
            lines = (self.root / HISTORY_FILE).read_text().splitlines()
        except FileNotFoundError:
            return []
        return [
            (parts[0], parts[1] if len(parts) > 1 else PROMOTED) for parts in map(str.split, lines) if parts
        ]

    def history(self) -> list[str]:
        """The versions made current, oldest first (one line each in `HISTORY`)."""
        return [version for version, _ in self._entries()]

    def rollback(self) -> str:
        """Serve again the version served before the current one; returns it.

        Rollbacks step back through the promotions: after promoting v1, v2, v3, two rollbacks serve
        v2, then v1 (not v3 again: a rollback is not a promotion to return to).
        """
        promoted: list[str] = []
        for version, kind in self._entries():
            if kind == ROLLED_BACK_TO:
                while promoted and promoted[-1] != version:
                    promoted.pop()  # the versions rolled back from
            elif not promoted or promoted[-1] != version:
                promoted.append(version)
        current = self.current_version()
        while promoted and promoted[-1] != current:
            promoted.pop()
        if len(promoted) < 2:
            raise NoModelError("no earlier served version to roll back to")
        target = promoted[-2]
        self._switch(target, ROLLED_BACK_TO)
        return target
