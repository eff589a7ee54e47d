"""Running upstream under ``torchrun`` (several nodes, SLURM) instead of its own single-node spawn.

Upstream starts one process per GPU with ``torch.multiprocessing.spawn`` and meets through a
``file://`` rendezvous in a temporary folder: one machine only. Under ``torchrun`` every process is
already started, with ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and ``MASTER_ADDR`` set. Here:

- every process joins ``torch.distributed`` with ``env://`` (nccl with CUDA, gloo without) first;
- rank 0 runs upstream's ``main`` as usual: it parses the options, makes the one run folder and
  calls ``spawn(fn, args)``, which instead sends ``args`` to the other ranks and runs ``fn`` as
  rank 0; the other ranks never run ``main`` (no second run folder), they receive ``args`` and run
  their own (identically patched) ``train.subprocess_fn`` with their global rank;
- upstream's own ``init_process_group(file://...)`` inside ``fn`` becomes a no-op (already joined);
- on CUDA, upstream's ``torch.device('cuda', rank)`` becomes this node's ``cuda:LOCAL_RANK``.

The controller all-reduces over the same group, so ``p`` and ``T`` stay identical on every rank.

When one rank fails, the others meet a closed connection in their next collective: :func:`lost_peer`
recognises that, so each says one line instead of a gloo/NCCL traceback, and :func:`tell_torchrun` puts a
rank's one-line error into torchrun's own failure summary (its "Root Cause") instead of "To enable
traceback see ...".
"""
from __future__ import annotations

import json
import os
import time
import types

import torch
import torch.distributed as dist

from .spec import UpstreamError

LAUNCHERS = ("spawn", "torchrun")
ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def torchrun_env() -> dict:
    """``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` as ints; fails with the fix when not under torchrun."""
    missing = [name for name in ENV if name not in os.environ]
    if missing:
        raise UpstreamError(f"--launcher torchrun needs the variables torchrun sets ({', '.join(missing)} missing): "
                           f"start with torchrun --nnodes N --nproc-per-node G ... diffaug-noise run ...")
    return {name: int(os.environ[name]) for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}


def join_group() -> None:
    """This process joins the world torchrun described (``env://``), once."""
    if not dist.is_initialized():
        env = torchrun_env()
        if torch.cuda.is_available():
            torch.cuda.set_device(env["LOCAL_RANK"])
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", init_method="env://")


class LocalRankTorch(types.ModuleType):
    """``torch`` with ``device('cuda', i)`` meaning this node's ``cuda:LOCAL_RANK`` (upstream indexes by global
    rank)."""

    def __init__(self, local_rank: int):
        super().__init__("torch")
        self.local_rank = local_rank

    def device(self, kind, *args, **kwargs):
        if str(kind).startswith("cuda"):
            return torch.device("cuda", self.local_rank)
        return torch.device(kind, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(torch, name)


def _no_second_init(*args, **kwargs) -> None:
    """Upstream's own ``init_process_group``: this process already joined torchrun's group."""


def torchrun_patches(modules: list) -> list:
    """Patches that make upstream's spawn, rendezvous and device choice fit torchrun (see the module docstring)."""
    env = torchrun_env()

    def spawn(fn, args=(), nprocs=None, **kwargs):
        if dist.get_world_size() != nprocs:
            raise RuntimeError(f"upstream asked for {nprocs} processes but torchrun started {dist.get_world_size()}")
        dist.broadcast_object_list([args], src=0)
        return fn(0, *args)

    patches = [(torch.multiprocessing, "spawn", spawn), (dist, "init_process_group", _no_second_init)]
    if torch.cuda.is_available():
        patches += [(module, "torch", LocalRankTorch(env["LOCAL_RANK"])) for module in modules]
    return patches


def follow_rank_zero(train: types.ModuleType) -> None:
    """On ranks > 0: receive the arguments rank 0's upstream ``main`` spawned with; run ``train.subprocess_fn``."""
    payload = [None]
    dist.broadcast_object_list(payload, src=0)
    train.subprocess_fn(dist.get_rank(), *payload[0])


PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "NCCL communicator was aborted")


def lost_peer(err: BaseException) -> bool:
    """Whether ``err`` is a collective failing because another rank's process is gone (gloo or NCCL)."""
    return isinstance(err, RuntimeError) and any(text in str(err) for text in PEER_GONE)


def tell_torchrun(message: str) -> None:
    """Give torchrun this rank's error (one line) for its failure summary, through ``$TORCHELASTIC_ERROR_FILE``.

    torchrun reads the file each worker may write (``torch.distributed.elastic``'s ``ErrorHandler`` format)
    and prints its ``py_callstack`` as the failed rank's "traceback"; without one it prints a link.
    """
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    record = {"message": {"message": message, "extraInfo": {"py_callstack": message,
                                                            "timestamp": str(int(time.time()))}}}
    try:
        with open(path, "w") as f:
            json.dump(record, f)
    except OSError:  # the summary then shows torchrun's link; the error itself was printed
        pass


def with_world_size(upstream_args: list, world_size: int) -> list:
    """``upstream_args`` with ``--gpus`` set to torchrun's world size (upstream sizes its run by it)."""
    out, skip = [], False
    for arg in upstream_args:
        if skip:
            skip = False
        elif arg == "--gpus":
            skip = True
        elif not arg.startswith("--gpus="):
            out.append(arg)
    return out + ["--gpus", str(world_size)]
