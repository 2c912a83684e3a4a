"""The one patch mechanism of the moto adapters: reversible, and loud when moto renamed its target."""

from __future__ import annotations

import pytest

from service.moto_adapters._patching import PatchSet


class Backend:
    def invoke(self) -> str:
        return "moto"


class Response(Backend):
    pass


def test_a_replacement_is_undone_and_an_inherited_name_is_left_inherited() -> None:
    patches = PatchSet("test")
    original = patches.replace(Response, "invoke", lambda self: "ours")
    assert original is Backend.invoke and Response().invoke() == "ours" and patches.active
    patches.restore()
    assert Response().invoke() == "moto" and "invoke" not in vars(Response) and not patches.active


def test_a_name_moto_lacks_is_an_error_unless_the_adapter_adds_it() -> None:
    patches = PatchSet("test")
    with pytest.raises(AttributeError, match="adapter test: Response has no 'invoke_v2'"):
        patches.replace(Response, "invoke_v2", lambda self: "ours")
    assert not patches.active, "nothing half-done"
    patches.replace(Response, "update_endpoint", lambda self: "added", adding=True)
    assert Response().update_endpoint() == "added"  # type: ignore[attr-defined]
    patches.restore()
    assert not hasattr(Response, "update_endpoint")
