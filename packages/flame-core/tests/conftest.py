"""flame-core test configuration."""

import os

import pytest
import torch
from flame_core.model import FlameModel

# The tests run small problems, often two pytest-xdist workers on two cores: one intra-op thread per
# process avoids oversubscription (which made the fitting tests ~10x slower on a busy machine).
if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def procedural_model() -> FlameModel:
    """``FlameModel.procedural()`` (float32, 300 shape + 100 expression components), built once per
    process."""
    return FlameModel.procedural()
