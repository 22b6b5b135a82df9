"""Find reconstruction methods by name.

Packages declare their methods as entry points in the group `fmri_recon.methods`
(`ridge = "fmri_encoders.methods.ridge:RidgePixels"`), so installing a package is all it takes to make its
methods available to every app; `register_method` adds one in-process (a notebook, a test).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import entry_points

from fmri_data.errors import DataError
from fmri_data.methods.base import MethodSettings, ReconstructionMethod

ENTRY_POINT_GROUP = "fmri_recon.methods"

_registered: dict[str, type[ReconstructionMethod]] = {}


def register_method(cls: type[ReconstructionMethod]) -> type[ReconstructionMethod]:
    """Make `cls` available under `cls.name` in this process (usable as a class decorator)."""
    _registered[cls.name] = cls
    return cls


def available_methods() -> list[str]:
    """Names of every method installed or registered, sorted."""
    names = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} | set(_registered)
    return sorted(names)


def method_class(name: str) -> type[ReconstructionMethod]:
    if name in _registered:
        return _registered[name]
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not matches:
        raise DataError(
            f"unknown method {name!r}; available: {', '.join(available_methods())} "
            "(a method's package must be installed to be found)"
        )
    cls = matches[0].load()
    if not (isinstance(cls, type) and issubclass(cls, ReconstructionMethod)):
        raise DataError(f"entry point {name!r} ({matches[0].value}) is not a ReconstructionMethod subclass")
    return cls


def check_methods(names: Sequence[str]) -> None:
    """Refuse every unknown name at once, before any method trains (a typo after a slow method would
    otherwise surface only when its turn comes)."""
    known = set(available_methods())
    unknown = [name for name in names if name not in known]
    if unknown:
        listed = ", ".join(repr(name) for name in unknown)
        raise DataError(
            f"unknown method {listed}; available: {', '.join(sorted(known))} "
            "(a method's package must be installed to be found)"
        )
    for name in names:
        method_class(name)  # loads the entry point: a broken one fails now, not after the others trained


def create_method(name: str, settings: MethodSettings | None = None) -> ReconstructionMethod:
    """A fresh, unfitted instance of the method called `name`."""
    return method_class(name)(settings)
