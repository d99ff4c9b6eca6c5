"""Built-in plugins. Every module under datasets/, detectors/ and explainers/ registers itself on import;
modules whose name starts with an underscore hold shared building blocks and register nothing."""
from __future__ import annotations

import importlib
import pkgutil

for _kind in ("datasets", "detectors", "explainers"):
    _package = importlib.import_module(f"{__name__}.{_kind}")
    for _info in sorted(pkgutil.iter_modules(_package.__path__), key=lambda i: i.name):
        if not _info.name.startswith("_"):
            importlib.import_module(f"{_package.__name__}.{_info.name}")
