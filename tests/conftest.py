"""Shared test fixtures: where the real data is, and generated-fixture helpers on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from segunify.paths import shared_root  # noqa: E402


@pytest.fixture()
def one_thread():
    """torch on one intra-op thread: tiny convolutions on a busy 2-core machine run faster and
    deterministically there. Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _shared(*parts: str) -> Path:
    root = shared_root(required=False)
    path = root.joinpath(*parts) if root else None
    if path is None or not path.exists():
        pytest.skip(f"real data not available: {'/'.join(parts)} (set SEGUNIFY_DATA)")
    return path


@pytest.fixture(scope="session")
def camvid_root() -> Path:
    return _shared("data", "CamVid")


@pytest.fixture(scope="session")
def kitti_root() -> Path:
    return _shared("data", "KITTI_semantics_sample")


@pytest.fixture(scope="session")
def rugd_root() -> Path:
    return _shared("data", "RUGD_sample")


@pytest.fixture(scope="session")
def cityscapes_half_root() -> Path:
    return _shared("data", "Cityscapes_aachen_half")


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    return _shared("weights")
