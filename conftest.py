"""Cross-package test configuration: every test runs offline."""

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HEADSTUDIO_OFFLINE", "1")
# caches (retargeting fits) go to a fresh folder per test process, never the user's home
os.environ.setdefault("HEADSTUDIO_CACHE", tempfile.mkdtemp(prefix="headstudio-test-cache-"))

# Under pytest-xdist each worker is its own process: one intra-op thread per worker (torch and the
# rigged-gaussians CPU backend, which follows torch's count) keeps N workers on N cores instead of
# N x N threads fighting for them.
if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in os.environ:
    import torch

    torch.set_num_threads(1)
