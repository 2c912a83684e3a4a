"""(speed) moto's server finds the service of a request without listing its own package on disk each time.

`DomainDispatcherApplication.get_backend_for_host` (moto 5.2.5) asks `moto.backends.list_of_moto_modules()`
on every request, twice for most, and that generator lists moto's package folder and stats each entry:
about a tenth of the server's time under load. The folder does not change while the process runs,
so `install()` answers from one listing taken at install time.
"""

from __future__ import annotations

from collections.abc import Iterable

from service.moto_adapters._patching import PatchSet

MOTO_VERSION = "5.2.5"

_patches = PatchSet("dispatch_cache")


def install() -> None:
    from moto import backends

    uninstall()
    modules = tuple(backends.list_of_moto_modules())

    def list_of_moto_modules() -> Iterable[str]:
        return modules

    _patches.replace(backends, "list_of_moto_modules", list_of_moto_modules)


def uninstall() -> None:
    _patches.restore()


def is_installed() -> bool:
    return _patches.active
