"""Act when a module is first imported, and time every import: for benchmarks of the command line.

A benchmark that imported the code it measures before calling the command line would take those imports
off the command's own path, and with them what the command overlaps with them (the Prefect server it
starts first). ``ImportWatch`` lets it import nothing: it runs a callback right after a named module has
executed (to wrap a function, count a model's passes) and can wrap the execution of every module (to time
imports).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ExtensionFileLoader, ModuleSpec, SourceFileLoader, SourcelessFileLoader
from types import ModuleType
from typing import Any

PER_MODULE_LOADERS = (SourceFileLoader, SourcelessFileLoader, ExtensionFileLoader)
"""Loaders made afresh for each module: wrapping one instance's ``exec_module`` touches that module alone."""


class ImportWatch(MetaPathFinder):
    """A finder placed first on ``sys.meta_path`` that finds nothing itself and watches what the others load.

    Args:
        wrap: Applied to each module's ``exec_module`` (e.g. a timer); None leaves it as it is.
    """

    def __init__(self, wrap: Callable[[Callable[[ModuleType], None]], Callable[[ModuleType], None]] | None = None):
        self.wrap = wrap
        self.callbacks: dict[str, list[Callable[[ModuleType], None]]] = {}

    def when_loaded(self, name: str, callback: Callable[[ModuleType], None]) -> None:
        """Call ``callback(module)`` once ``name`` has executed (at once if it already has)."""
        if name in sys.modules:
            callback(sys.modules[name])
        else:
            self.callbacks.setdefault(name, []).append(callback)

    def install(self) -> ImportWatch:
        """Put the watch first on ``sys.meta_path``."""
        sys.meta_path.insert(0, self)
        return self

    def find_spec(self, name: str, path: Sequence[str] | None, target: Any = None) -> ModuleSpec | None:
        """The spec the other finders give, its loader's ``exec_module`` wrapped where that touches one module."""
        spec = None
        for finder in sys.meta_path:
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
        if spec is None or not isinstance(spec.loader, PER_MODULE_LOADERS):
            return spec
        execute = spec.loader.exec_module
        timed = execute if self.wrap is None else self.wrap(execute)

        def exec_module(module: ModuleType) -> None:
            timed(module)
            for callback in self.callbacks.pop(name, ()):
                callback(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec
