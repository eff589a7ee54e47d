import json
import os
import re
import tempfile

import click
import dnnlib
import torch
from torch_utils import training_stats
from training import training_loop

RESULTS = []  # what the last in-process run returned (D, loss), for the contract tests


def subprocess_fn(rank, c, temp_dir):
    if c.num_gpus > 1:  # upstream uses nccl; the stand-in's ranks are CPU processes
        init_file = os.path.abspath(os.path.join(temp_dir, ".torch_distributed_init"))
        torch.distributed.init_process_group(backend="gloo", init_method=f"file://{init_file}", rank=rank,
                                             world_size=c.num_gpus)
    sync_device = torch.device("cuda", rank) if c.num_gpus > 1 else None  # as upstream, whatever the backend
    training_stats.init_multiprocessing(rank=rank, sync_device=sync_device)
    return training_loop.training_loop(rank=rank, **c)


def launch_training(c, desc, outdir, dry_run):
    names = os.listdir(outdir) if os.path.isdir(outdir) else []
    prev = [int(m.group()) for m in (re.match(r"^\d+", x) for x in names) if m is not None]
    c.run_dir = os.path.join(outdir, f"{max(prev, default=-1) + 1:05d}-{desc}")
    if dry_run:
        return
    os.makedirs(c.run_dir)
    with open(os.path.join(c.run_dir, "training_options.json"), "wt") as f:
        json.dump(c, f, indent=2)
    with tempfile.TemporaryDirectory() as temp_dir:
        if c.num_gpus == 1:
            RESULTS.append(subprocess_fn(rank=0, c=c, temp_dir=temp_dir))
        else:
            torch.multiprocessing.spawn(fn=subprocess_fn, args=(c, temp_dir), nprocs=c.num_gpus)


@click.command()
@click.option("--outdir", required=True)
@click.option("--data", required=True)
@click.option("--gpus", type=click.IntRange(min=1), required=True)
@click.option("--batch", type=click.IntRange(min=1), required=True)
@click.option("--preset", type=str, required=True)
@click.option("--cond", type=bool, default=False)
@click.option("--aug", type=bool, default=True)
@click.option("--resume", type=str)
@click.option("--g-batch-gpu", type=int)
@click.option("--d-batch-gpu", type=int)
@click.option("--kimg", type=float, default=0.032)
@click.option("--tick", type=float, default=0.008)
@click.option("--snap", type=int, default=50)
@click.option("--seed", type=int, default=0)
@click.option("-n", "--dry-run", is_flag=True)
def main(**kwargs):
    opts = dnnlib.EasyDict(kwargs)
    c = dnnlib.EasyDict()
    c.G_kwargs = dnnlib.EasyDict(class_name="training.networks.Generator", NoiseDimension=4, FP16Stages=[-1])
    c.D_kwargs = dnnlib.EasyDict(class_name="training.networks.Discriminator", WidthPerStage=[16, 8], FP16Stages=[0])
    c.G_opt_kwargs = dnnlib.EasyDict(class_name="torch.optim.Adam", betas=[0, 0], eps=1e-8)
    c.D_opt_kwargs = dnnlib.EasyDict(class_name="torch.optim.Adam", betas=[0, 0], eps=1e-8)
    c.loss_kwargs = dnnlib.EasyDict(class_name="training.loss.R3GANLoss")
    c.training_set_kwargs = dnnlib.EasyDict(path=opts.data, resolution=8, use_labels=opts.cond,
                                            c_dim=3 if opts.cond else 0)
    c.num_gpus, c.batch_size = opts.gpus, opts.batch
    c.g_batch_gpu = opts.g_batch_gpu or opts.batch // opts.gpus
    c.d_batch_gpu = opts.d_batch_gpu or opts.batch // opts.gpus
    if opts.cond:
        c.D_kwargs.ConditionEmbeddingDimension = 8
    decay_nimg = 1000
    c.ema_scheduler = {"base_value": 0, "final_value": 500, "total_nimg": decay_nimg}
    c.aug_scheduler = {"base_value": 0, "final_value": 0.3, "total_nimg": decay_nimg}
    c.lr_scheduler = {"base_value": 2e-4, "final_value": 5e-5, "total_nimg": decay_nimg}
    c.gamma_scheduler = {"base_value": 1, "final_value": 0.1, "total_nimg": decay_nimg}
    c.beta2_scheduler = {"base_value": 0.9, "final_value": 0.99, "total_nimg": decay_nimg}
    c.total_kimg, c.kimg_per_tick = opts.kimg, opts.tick
    c.image_snapshot_ticks = c.network_snapshot_ticks = opts.snap
    c.random_seed = opts.seed
    if opts.aug:
        c.augment_kwargs = dnnlib.EasyDict(class_name="training.augment.AugmentPipe", xflip=1)
    if opts.resume is not None:
        c.resume_pkl = opts.resume
    launch_training(c=c, desc=f"standin-gpus{c.num_gpus}-batch{c.batch_size}", outdir=opts.outdir, dry_run=opts.dry_run)
