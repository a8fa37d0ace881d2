"""Dataset adapters: one module per dataset, each registering itself; all are imported here."""

from __future__ import annotations

import importlib
import pkgutil

from segunify.datasets.base import (
    CheckReport,
    DatasetAdapter,
    Sample,
    available_datasets,
    check_dataset,
    create_dataset,
    dataset_taxonomy_name,
    evenly,
    get_dataset_class,
    register_dataset,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base" and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "CheckReport",
    "DatasetAdapter",
    "Sample",
    "available_datasets",
    "check_dataset",
    "create_dataset",
    "dataset_taxonomy_name",
    "evenly",
    "get_dataset_class",
    "register_dataset",
]
