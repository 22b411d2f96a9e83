"""The machine a benchmark ran on, for its results files."""

import os
import platform

import torch

from encluster.provenance import cpu_name


def machine():
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__}


def describe():
    m = machine()
    return f"{m['cpu']}, {m['cores']} cores, Python {m['python']}, torch {m['torch']}"
