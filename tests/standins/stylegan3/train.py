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
@click.option("--cfg", type=click.Choice(["stylegan3-t", "stylegan3-r", "stylegan2"]), required=True)
@click.option("--data", required=True)
@click.option("--gpus", type=click.IntRange(min=1), required=True)
@click.option("--batch", type=click.IntRange(min=1), required=True)
@click.option("--gamma", type=click.FloatRange(min=0), required=True)
@click.option("--cond", type=bool, default=False)
@click.option("--aug", type=click.Choice(["noaug", "ada", "fixed"]), default="ada")
@click.option("--target", type=float, default=0.6)
@click.option("--resume", type=str)
@click.option("--kimg", type=float, default=0.032)
@click.option("--tick", type=float, default=0.008)
@click.option("--snap", type=int, default=50)
@click.option("--seed", type=int, default=0)
@click.option("--batch-gpu", type=int)
@click.option("-n", "--dry-run", is_flag=True)
def main(**kwargs):
    opts = dnnlib.EasyDict(kwargs)
    c = dnnlib.EasyDict()
    c.G_kwargs = dnnlib.EasyDict(class_name="training.networks_stylegan2.Generator" if opts.cfg == "stylegan2"
                                 else "training.networks_stylegan3.Generator", z_dim=4, w_dim=4)
    c.D_kwargs = dnnlib.EasyDict(class_name="training.networks_stylegan2.Discriminator", block_kwargs=dnnlib.EasyDict(),
                                 mapping_kwargs=dnnlib.EasyDict(), epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=2))
    c.G_opt_kwargs = dnnlib.EasyDict(class_name="torch.optim.Adam", betas=[0, 0.99], eps=1e-8, lr=0.002)
    c.D_opt_kwargs = dnnlib.EasyDict(class_name="torch.optim.Adam", betas=[0, 0.99], eps=1e-8, lr=0.002)
    c.loss_kwargs = dnnlib.EasyDict(class_name="training.loss.StyleGAN2Loss", r1_gamma=opts.gamma)
    c.training_set_kwargs = dnnlib.EasyDict(path=opts.data, resolution=8, use_labels=opts.cond,
                                            c_dim=3 if opts.cond else 0)
    c.num_gpus, c.batch_size = opts.gpus, opts.batch
    c.batch_gpu = opts.batch_gpu or opts.batch // opts.gpus
    c.total_kimg, c.kimg_per_tick = opts.kimg, opts.tick
    c.image_snapshot_ticks = c.network_snapshot_ticks = opts.snap
    c.random_seed = opts.seed
    c.ema_kimg = c.batch_size * 10 / 32
    if opts.cfg == "stylegan3-r":
        c.loss_kwargs.blur_init_sigma = 10
        c.loss_kwargs.blur_fade_kimg = c.batch_size * 200 / 32 / 100  # upstream: / 1; the stand-in runs 0.08 kimg
    if opts.aug != "noaug":
        c.augment_kwargs = dnnlib.EasyDict(class_name="training.augment.AugmentPipe", xflip=1)
        if opts.aug == "ada":
            c.ada_target = opts.target
    if opts.resume is not None:
        c.resume_pkl = opts.resume
        c.ada_kimg = 100
        c.ema_rampup = None
        c.loss_kwargs.blur_init_sigma = 0
    launch_training(c=c, desc=f"{opts.cfg}-standin-gpus{c.num_gpus}", outdir=opts.outdir, dry_run=opts.dry_run)
