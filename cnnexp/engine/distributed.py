"""Data-parallel training over the processes `torchrun` starts (one per GPU, or several on a CPU).

torchrun gives every process WORLD_SIZE, RANK, LOCAL_RANK and the rendezvous address in its
environment; `start()` joins them into one process group (NCCL for CUDA tensors, Gloo for CPU ones)
before the Hydra job runs, so that rank 0 alone claims the run folder and tells the others its name.
`Group` is what the trainer asks: its rank and world size, its shard of a batch, the loss of a
shard, all-reduced sums, and the DDP wrapper. A single process is rank 0 of a group of one, and
every method then does nothing the single-process run would not do itself.
"""

import os
import re
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn.functional as F

from cnnexp.utils.errors import PeerLost

def launched() -> bool:
    """Started by torchrun (or anything that sets its variables) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_rank_0() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def start(timeout_s: float) -> None:
    """Join the process group; a collective that waits longer than `timeout_s` for a process fails."""
    if dist.is_initialized():
        return
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "cpu:gloo,cuda:nccl"
    timeout = timedelta(seconds=float(timeout_s))
    store = attempt_store(timeout)
    if store is None:
        dist.init_process_group(backend, timeout=timeout)
    else:
        dist.init_process_group(backend, store=store, rank=int(os.environ["RANK"]),
                                world_size=int(os.environ["WORLD_SIZE"]), timeout=timeout)


def attempt_store(timeout: timedelta):
    """The store of torchrun's agent, with keys of this restart attempt only (None when torchrun does not
    share its store). torchrun keeps one store across restarts (TORCHELASTIC_USE_AGENT_STORE): after
    `--max-restarts` started the workers again, the process group's keys still held the previous
    attempt's addresses, and a worker could read a dead peer's port and fail to connect (pytorch#135712).
    The agent restarts all its workers together, so its restart count names the attempt for all of them."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    agent_store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                                int(os.environ["WORLD_SIZE"]), is_master=False, timeout=timeout)
    return dist.PrefixStore(f"cnnexp/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", agent_store)


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def share(value_on_rank_0):
    """Rank 0's value (e.g. the run folder it claimed), on every rank."""
    box = [value_on_rank_0]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class Group:
    """This process's place among the training processes."""

    def __init__(self):
        self.active = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.active else 0
        self.world_size = dist.get_world_size() if self.active else 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run folder and prints."""
        return self.rank == 0

    # ---- the model -----------------------------------------------------------------------------
    def wrap(self, model: torch.nn.Module, device: torch.device, sync_bn: bool) -> torch.nn.Module:
        """The model the training step calls: DDP over `model` (whose state_dict stays free of a
        `module.` prefix). Buffers are not broadcast each step: BatchNorm statistics are either
        synchronised (SyncBatchNorm, CUDA) or averaged at each evaluation (`average_buffers`)."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        if sync_bn and device.type == "cuda":
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        device_ids = [device.index if device.index is not None else torch.cuda.current_device()] \
            if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)

    def batchnorm_mode(self, model: torch.nn.Module, device: torch.device, sync_bn: bool) -> str | None:
        """What the run summary says about BatchNorm statistics (None without BatchNorm or ranks)."""
        if not self.active or not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            return None
        if sync_bn and device.type == "cuda":
            return "SyncBatchNorm (statistics over the global batch)"
        return "per-process batch statistics; running statistics averaged across processes at each evaluation"

    def average_buffers(self, model: torch.nn.Module) -> None:
        """Average floating-point buffers (BatchNorm running mean/var) across ranks, so every rank
        evaluates, and rank 0 saves, the same model."""
        if not self.active:
            return
        for buffer in model.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer.div_(self.world_size)

    # ---- batches and losses --------------------------------------------------------------------
    def shard(self, index: torch.Tensor) -> torch.Tensor:
        """This rank's consecutive part of one global batch of indices (sizes differ by at most one)."""
        return index.tensor_split(self.world_size)[self.rank] if self.active else index

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, global_batch: int,
             label_smoothing: float = 0.0) -> torch.Tensor:
        """The training loss of this rank's shard, weighted so that DDP's gradient mean over ranks is
        the gradient of the mean loss over the global batch, whatever the shard sizes; the ranks' mean
        of it is the global batch's loss."""
        if not self.active:
            return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
        summed = F.cross_entropy(logits, labels, reduction="sum", label_smoothing=label_smoothing)
        return summed * (self.world_size / global_batch)

    def gather_losses(self, losses: torch.Tensor, stop_requested: bool) -> tuple[list[float], bool]:
        """The global loss of each step since the last call, and whether any rank was asked to stop:
        one collective and one device-to-host copy every `trainer.log_every` steps."""
        flags = torch.tensor([float(stop_requested)], device=losses.device, dtype=losses.dtype)
        both = torch.cat([losses.detach(), flags])
        if self.active:
            self.all_reduce(both)
            both[:-1] /= self.world_size
        values = both.tolist()
        return values[:-1], values[-1] > 0

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any (decided once for all)."""
        if not self.active:
            return flag
        box = torch.tensor([float(flag)])
        self.all_reduce(box)
        return box.item() > 0

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks, in place; a rank that died or hangs past the timeout ends the run here."""
        try:
            dist.all_reduce(tensor)
        except RuntimeError as exc:  # DistBackendError and Gloo's own errors are RuntimeErrors
            raise self.lost(exc) from exc
        return tensor

    def lost(self, exc: BaseException) -> PeerLost:
        return PeerLost(f"another training process stopped or stopped answering (rank {self.rank} of "
                        f"{self.world_size} saw: {first_sentence(exc)})")

    def is_peer_failure(self, exc: BaseException) -> bool:
        """A collective's failure (a rank killed, a timeout) rather than a bug of this process."""
        if not self.active:
            return False
        if isinstance(exc, getattr(dist, "DistError", ())):
            return True
        text = str(exc).lower()
        return isinstance(exc, RuntimeError) and any(w in text for w in ("gloo", "nccl", "connection", "timed out",
                                                                          "peer"))


def first_sentence(exc: BaseException) -> str:
    """'[.../pair.cc:545] Read error [127.0.0.1]:9919: Connection reset by peer. This is typically...'
    -> 'Read error [127.0.0.1]:9919: Connection reset by peer'."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    text = re.sub(r"^\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", text)
    return text.split(". ", 1)[0][:160]


def shard_starts(n: int, batch_size: int, rank: int, world_size: int) -> range:
    """Evaluation: this rank takes every world_size-th chunk of `batch_size` images, so every image
    is evaluated by exactly one rank (no padding, no duplicates)."""
    return range(rank * batch_size, n, world_size * batch_size)



class Discard:
    """Stands in for a logger (history.csv, curves.png, TensorBoard) on ranks other than 0: every
    call does nothing, so only rank 0 writes the run folder."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None
