"""One torch thread per test process: the suite runs on two xdist workers (README: pytest -n 2), and two 2-thread
OpenMP pools on 2 cores collapse. Subprocesses the tests start inherit OMP_NUM_THREADS."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

torch.set_num_threads(1)
