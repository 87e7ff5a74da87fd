"""Test-wide settings: one torch thread per test process (the suite runs on 2 workers)."""

import os

import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")  # notebook kernels started by the tests inherit it

torch.set_num_threads(int(os.environ.get("RTSTUDY_TEST_THREADS", "1")))
os.environ.setdefault("RTSTUDY_PROGRESS", "0")
