"""flame-core test configuration."""

import os

import torch

# The tests run small problems, often two pytest-xdist workers on two cores: one intra-op thread per
# process avoids oversubscription (which made the fitting tests ~10x slower on a busy machine).
if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(1)
