"""Find reconstruction methods by name.

Packages declare their methods as entry points in the group `fmri_recon.methods`
(`ridge = "fmri_encoders.methods.ridge:RidgePixels"`), so installing a package is all it takes to make its
methods available to every app; `register_method` adds one in-process (a notebook, a test). Names joined
by "+" (`cvae+ldm`) name the average of those methods, its weights chosen on validation (the `ensemble`
entry point's class, given the members).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from difflib import get_close_matches
from functools import cache
from importlib.metadata import entry_points

from fmri_data.dataset import PairedDataset
from fmri_data.errors import DataError
from fmri_data.methods.base import SCOPE, MethodSettings, ReconstructionMethod

ENTRY_POINT_GROUP = "fmri_recon.methods"
JOIN = "+"
"""Joins the members of an ensemble's name."""
ENSEMBLE = "ensemble"
"""The entry point of the class that averages members' reconstructions (its `members` set per name)."""

_registered: dict[str, type[ReconstructionMethod]] = {}


def register_method(cls: type[ReconstructionMethod]) -> type[ReconstructionMethod]:
    """Make `cls` available under `cls.name` in this process (usable as a class decorator)."""
    if JOIN in cls.name or SCOPE in cls.name:
        raise DataError(f"method name {cls.name!r}: '{JOIN}' joins ensembles, '{SCOPE}' scopes settings")
    _registered[cls.name] = cls
    return cls


def available_methods() -> list[str]:
    """Names of every method installed or registered, sorted."""
    names = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} | set(_registered)
    return sorted(names)


def method_class(name: str) -> type[ReconstructionMethod]:
    if JOIN in name:
        return _ensemble_class(name)
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


@cache
def _ensemble_class(name: str) -> type[ReconstructionMethod]:
    """The `ensemble` class with `name`'s members, named `name` (one class per name, so results keep it)."""
    members = tuple(name.split(JOIN))
    if "" in members or ENSEMBLE in members or len(set(members)) < len(members):
        raise DataError(f"{name!r}: an ensemble joins distinct method names with '+', e.g. cvae+ldm")
    for member in members:
        method_class(member)
    base = method_class(ENSEMBLE)
    namespace = {"name": name, "members": members, "__module__": base.__module__}
    return type(f"{base.__name__}[{name}]", (base,), namespace)


def check_methods(names: Sequence[str]) -> None:
    """Refuse every unknown name at once, before any method trains (a typo after a slow method would
    otherwise surface only when its turn comes)."""
    known = set(available_methods())
    unknown = [part for name in names for part in name.split(JOIN) if part and part not in known]
    if unknown:
        listed = ", ".join(repr(name) for name in unknown)
        raise DataError(
            f"unknown method {listed}; available: {', '.join(sorted(known))} "
            "(a method's package must be installed to be found)"
        )
    if ENSEMBLE in names:
        raise DataError(
            f"{ENSEMBLE!r} averages other methods: join their names with '+', e.g. --method cvae+ldm"
        )
    for name in names:
        method_class(name)  # loads the entry point: a broken one fails now, not after the others trained


def check_colour(names: Sequence[str], settings: MethodSettings) -> None:
    """Refuse colour data for methods that reconstruct grayscale only (every part of an ensemble must take
    colour), or that cannot as configured (ReconstructionMethod.check_colour), before any method trains."""
    parts = sorted({part for name in names for part in name.split(JOIN)})
    grayscale = [part for part in parts if not method_class(part).colour]
    if grayscale:
        colour = sorted(name for name in available_methods() if method_class(name).colour)
        raise DataError(
            f"{', '.join(grayscale)} reconstruct grayscale images only, and these stimuli are in colour; "
            f"run {', '.join(colour)} on them, or load the data in grayscale (leave out --colour, or "
            "convert an .npz's images to grayscale)"
        )
    for part in parts:
        create_method(part, settings).check_colour()


def check_stimuli(names: Sequence[str], settings: MethodSettings, stimuli: PairedDataset) -> None:
    """Refuse stimuli (one trial of each, with its caption where the data have them) that a method (or a
    part of an ensemble), as configured, cannot learn from (ReconstructionMethod.check_stimuli), before
    any method trains."""
    for part in sorted({part for name in names for part in name.split(JOIN)}):
        create_method(part, settings).check_stimuli(stimuli)


def check_choices(names: Sequence[str], keys: Iterable[str]) -> None:
    """Refuse a setting to choose (a `MethodSettings.choices` key, "field" or "method:field") that no
    method it reaches chooses among, before any method trains: a misspelt name would be ignored, and the
    run would end hours later without having chosen it."""
    members = {part: method_class(part).settings_to_choose() for name in names for part in name.split(JOIN)}
    run_wide = set().union(*(method_class(name).settings_to_choose() for name in names))
    for key in keys:
        method, scope, field = key.partition(SCOPE) if SCOPE in key else ("", "", key)
        if scope and method not in members:
            raise DataError(f"setting to choose {key!r}: no method of this run is called {method!r}")
        reached = [method] if scope else list(names)
        known = members[method] if scope else run_wide
        if field not in known:
            readers = [name for name, read in members.items() if field in read]
            hint = _choice_hint(field, sorted(known), readers, alone=len(reached) == 1)
            raise DataError(f"setting to choose {key!r}: not a setting of {', '.join(reached)}; {hint}")


def check_settings_read(names: Sequence[str], keys: Iterable[str]) -> None:
    """Refuse a setting given to the run (an option such as --langevin-steps: a `MethodSettings.sampling`
    key) that no method of the run reads, before any method trains: `configure` drops what a method's config
    has no field for, so the run would end hours later without it."""
    read = frozenset().union(*(method_class(name).settings_read() for name in names))
    for key in keys:
        if key not in read:
            readers = [name for name in available_methods() if key in method_class(name).settings_read()]
            verb = "reads" if len(readers) == 1 else "read"
            hint = f"{', '.join(readers)} {verb} it" if readers else "no installed method reads it"
            raise DataError(
                f"setting {key!r} is read by none of the methods run ({', '.join(names)}): {hint}; "
                "add one of them with --method, or leave the option out"
            )


def _choice_hint(field: str, known: list[str], readers: list[str], *, alone: bool) -> str:
    """What to write instead: the method that does read `field` (for a key scoped to another one), else the
    closest name there is, else every name there is."""
    if readers:
        return f"{readers[0]} chooses it: {readers[0]}{SCOPE}{field}"
    if close := get_close_matches(field, known, n=1, cutoff=0.75):
        return f"did you mean {close[0]!r}?"
    if known:
        return f"choose among {', '.join(known)}"
    return "it chooses no setting on validation" if alone else "none of them chooses a setting on validation"


def create_method(name: str, settings: MethodSettings | None = None) -> ReconstructionMethod:
    """A fresh, unfitted instance of the method called `name`, with the settings it is meant to see
    (MethodSettings.for_method; an ensemble gets them all and passes each member its own)."""
    settings = settings or MethodSettings()
    return method_class(name)(settings if JOIN in name else settings.for_method(name))
