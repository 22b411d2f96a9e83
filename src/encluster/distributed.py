"""Running one job across several processes (``torchrun``), with one code path.

Every process runs the same program, as in nanoGPT: `launched` joins the process group
`torchrun` describes in the environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` ...),
and the library asks `current` which process it is. A `Group` of one process is the
ordinary single-process case: its reductions do nothing, so the distributed algorithms
(k-means, DEC's target distribution, sharded encoding) are written once and run
unchanged alone or across processes.

Data moves between processes only as tensors (no pickle): arrays are shared with
their shapes sent first, so any process can rebuild exactly what the main process has.
"""

import gc
import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from . import errors

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Group:
    """This process's place among the processes of one job.

    rank : int
        This process's number, 0 .. world_size - 1; rank 0 logs and writes files.
    world_size : int
        How many processes share the job (1 alone).
    """

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self):
        return self.rank == 0

    def rank_seed(self, seed):
        """This process's own seed, derived from the run's seed (nanoGPT's offset by rank), for
        draws that must differ between processes, such as each one's share of a sample."""
        return int(seed) + self.rank

    def all_reduce(self, tensor):
        """Sum `tensor` over all processes, in place; return it (unchanged alone)."""
        if self.world_size > 1:
            dist.all_reduce(tensor)
        return tensor

    def any(self, flag):
        """True on every process when `flag` is true on any (e.g. a stop request)."""
        return bool(self.all_reduce(torch.tensor([int(bool(flag))])).item())

    def check_batch(self, batch_size, what="batch_size"):
        """Refuse a global batch that does not split evenly over the processes."""
        if batch_size % self.world_size:
            raise errors.ConfigError(f"{what}={batch_size} does not split evenly over {self.world_size} processes; "
                                     f"use a multiple of {self.world_size} (each takes {what} / {self.world_size} rows)")

    def padded(self, n):
        """`n` rounded up to a multiple of the number of processes: the length of an epoch's order."""
        return n + (-n) % self.world_size

    def batch_share(self, window):
        """This process's rows of one global batch: every world_size-th, from its rank on
        (the interleaving of torch's DistributedSampler)."""
        return window[self.rank :: self.world_size]

    def data_parallel(self, module):
        """`module` itself alone; across processes wrapped in DistributedDataParallel, so
        that backward() averages the gradients of all processes."""
        return module if self.world_size == 1 else torch.nn.parallel.DistributedDataParallel(module)

    def barrier(self):
        """Wait until every process got here (e.g. until rank 0 finished writing a file)."""
        if self.world_size > 1:
            dist.barrier()

    def shard(self, n):
        """The contiguous rows ``start, stop`` of `n` this process encodes or scores:
        rank order, so gathering the shards in rank order gives the rows back in order."""
        per_rank, extra = divmod(n, self.world_size)
        start = self.rank * per_rank + min(self.rank, extra)
        return start, start + per_rank + (self.rank < extra)

    def all_gather_rows(self, array):
        """Concatenate every process's rows of `array` (lengths may differ) in rank order."""
        array = np.ascontiguousarray(array)
        if self.world_size == 1:
            return array
        lengths = torch.zeros(self.world_size, dtype=torch.int64)
        lengths[self.rank] = len(array)
        lengths = self.all_reduce(lengths).tolist()
        # all_gather needs equal shapes: pad to the longest share, then trim.
        padded = np.zeros((max(lengths), *array.shape[1:]), dtype=array.dtype)
        padded[: len(array)] = array
        parts = [torch.empty_like(torch.from_numpy(padded)) for _ in range(self.world_size)]
        dist.all_gather(parts, torch.from_numpy(padded))
        return np.concatenate([part.numpy()[:length] for part, length in zip(parts, lengths)])

    def share(self, values=None):
        """The main process's `values` (a dict of arrays and JSON-able settings) on every process.

        Other processes pass nothing and receive a copy; alone, `values` comes back as is.
        """
        if self.world_size == 1:
            return values
        arrays = {k: np.ascontiguousarray(v) for k, v in (values or {}).items() if isinstance(v, np.ndarray)}
        header = None
        if self.is_main:
            header = {"arrays": {k: [str(a.dtype), list(a.shape)] for k, a in arrays.items()},
                      "settings": {k: v for k, v in values.items() if k not in arrays}}
        header = json.loads(self._broadcast_bytes(json.dumps(header).encode() if self.is_main else None))
        shared = dict(header["settings"])
        for name, (dtype, shape) in header["arrays"].items():
            tensor = torch.from_numpy(arrays[name]) if self.is_main else torch.empty(shape, dtype=_TORCH_DTYPES[dtype])
            dist.broadcast(tensor, src=0)
            shared[name] = tensor.numpy()
        return shared

    def on_main(self, compute):
        """Run `compute` (returning a dict for `share`) on the main process only, and return
        its result on every process: for the steps that do not distribute (UMAP's fit, a
        Gaussian mixture). Our own errors raised there are raised on every process too,
        so none is left waiting."""
        if self.world_size == 1:
            return compute()
        result = None
        if self.is_main:
            try:
                result = compute()
            except errors.EnclusterError as exc:
                result = {"error": str(exc), "error_type": type(exc).__name__}
        result = self.share(result)
        if "error" in result:
            raise getattr(errors, result["error_type"], errors.EnclusterError)(result["error"])
        return result

    def _broadcast_bytes(self, data):
        size = torch.tensor([len(data) if self.is_main else 0])
        dist.broadcast(size, src=0)
        buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8) if self.is_main else \
            torch.empty(int(size.item()), dtype=torch.uint8)
        dist.broadcast(buffer, src=0)
        return buffer.numpy().tobytes()


_TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64, "int32": torch.int32,
                 "uint8": torch.uint8, "bool": torch.bool}


def current():
    """The process group this process belongs to: one process when none was started."""
    if dist.is_available() and dist.is_initialized():
        return Group(dist.get_rank(), dist.get_world_size())
    return Group()


@contextmanager
def launched():
    """Join the process group that ``torchrun`` set up in the environment, if any, and
    leave it cleanly however the block ends (success, error or Ctrl-C).

    gloo between CPU processes; on GPU machines also nccl for tensors on the GPU (each
    process takes the GPU of its ``LOCAL_RANK``), while the small CPU tensors the
    clustering exchanges still go through gloo. Without ``WORLD_SIZE`` > 1 (plain
    ``python``/``encluster``), or when the caller already started a group, nothing is
    started or stopped.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        yield current()
        return
    gpu = torch.cuda.is_available()
    if gpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("cpu:gloo,cuda:nccl" if gpu else "gloo")
    try:
        group = current()
        log.debug("process %d of %d joined the job", group.rank, group.world_size)
        yield group
    finally:
        # A DistributedDataParallel wrapper left in a reference cycle would be freed after
        # its group is gone, which aborts the process: free it first.
        gc.collect()
        dist.destroy_process_group()
