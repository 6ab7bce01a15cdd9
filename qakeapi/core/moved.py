"""Names that moved: the old path keeps working for one release, with a :class:`DeprecationWarning`."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping

__all__ = ["moved"]


def moved(module: str, names: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that finds moved names where they live now, with a warning.

    Args:
        module: The old module's name (``__name__``).
        names: Each old name and its new place, ``"package.module.Name"``.

    Returns:
        The function to assign to the old module's ``__getattr__``.
    """

    def __getattr__(name: str) -> object:
        place = names.get(name)
        if place is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        where, _, new_name = place.rpartition(".")
        warnings.warn(f"{module}.{name} moved to {place}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(where), new_name)

    return __getattr__
