"""Named plug-ins of one kind (stages, init methods, eval tasks, translation backends), so adding one is one file.

A registry knows the modules that hold its built-ins and imports them the first time it is read; a plug-in
outside them (a user's module, a test) registers itself with the same decorator.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from langadapt.errors import LangadaptError

T = TypeVar("T")


class Registry(Generic[T]):
    """name → plug-in; built-ins come from `builtin_modules` (imported lazily) and are listed in that order
    whatever order they were imported in, plug-ins after them in registration order."""

    def __init__(self, kind: str, builtin_modules: tuple[str, ...] | Callable[[], tuple[str, ...]] = (),
                 module_of: Callable[[T], str] | None = None):
        self.kind = kind
        self._builtin_modules = builtin_modules  # or a function finding them (a package's modules, say)
        self.module_of = module_of  # the module that defines a plug-in (for the built-in order)
        self._items: dict[str, T] = {}
        self._loaded = False

    def add(self, name: str, item: T) -> T:
        """Register `item` as `name` (a second registration under the same name replaces the first)."""
        self._items[name] = item
        return item

    def remove(self, name: str) -> None:
        self._items.pop(name, None)

    def decorator(self, name: str, wrap: Callable[[T], T] | None = None) -> Callable[[T], T]:
        def register(item: T) -> T:
            self.add(name, wrap(item) if wrap else item)
            return item

        return register

    @property
    def builtin_modules(self) -> tuple[str, ...]:
        found = self._builtin_modules
        return found() if callable(found) else found

    def load(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # before importing: the modules register into this registry as they load
        for module in self.builtin_modules:
            importlib.import_module(module)

    def items(self) -> dict[str, T]:
        self.load()
        if self.module_of is None:
            return dict(self._items)
        rank = {module: index for index, module in enumerate(self.builtin_modules)}
        ordered = sorted(enumerate(self._items.items()),
                         key=lambda entry: (rank.get(self.module_of(entry[1][1]), len(rank)), entry[0]))
        return dict(item for _, item in ordered)

    def names(self) -> list[str]:
        return list(self.items())

    def __contains__(self, name: object) -> bool:
        return name in self.items()

    def __iter__(self) -> Iterator[str]:
        return iter(self.items())

    def get(self, name: str, where: str | None = None) -> T:
        """The plug-in `name`, or a one-line error listing the known ones (and the closest)."""
        items = self.items()
        if name in items:
            return items[name]
        close = difflib.get_close_matches(name, list(items), n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"choose one of: {', '.join(items)}"
        raise LangadaptError(f"{where or self.kind} '{name}' is not a known {self.kind} — {hint}")
