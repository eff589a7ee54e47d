import json
import os

import click
import dnnlib
import torch
from training import training_loop

RESULTS = []  # what the last in-process run returned (D, loss), for the contract tests


def subprocess_fn(rank, c, temp_dir):
    return training_loop.training_loop(rank=rank, **c)


def launch_training(c, desc, outdir, dry_run):
    c.run_dir = os.path.join(outdir, desc)
    os.makedirs(c.run_dir, exist_ok=True)
    with open(os.path.join(c.run_dir, "training_options.json"), "wt+") as f:
        json.dump(c, f, indent=2)
    if c.num_gpus == 1:
        RESULTS.append(subprocess_fn(rank=0, c=c, temp_dir=outdir))
    else:
        torch.multiprocessing.spawn(fn=subprocess_fn, args=(c, outdir), nprocs=c.num_gpus)


@click.command()
@click.option("--outdir", required=True)
@click.option("--cfg", type=click.Choice(["fastgan", "fastgan_lite", "stylegan2"]), required=True)
@click.option("--data", required=True)
@click.option("--gpus", type=int, required=True)
@click.option("--batch", type=int, required=True)
@click.option("--kimg", type=float, default=0.032)
@click.option("--resolution", type=int, default=16)
@click.option("--resume")
@click.option("--cond", type=bool, default=False)
def main(**kwargs):
    opts = dnnlib.EasyDict(kwargs)
    c = dnnlib.EasyDict(num_gpus=opts.gpus, batch_size=opts.batch, batch_gpu=2, total_kimg=opts.kimg,
                        resolution=opts.resolution)
    c.G_kwargs = dnnlib.EasyDict(class_name="pg_modules.networks_fastgan.Generator" if "fastgan" in opts.cfg
                                 else "pg_modules.networks_stylegan2.Generator")
    c.training_set_kwargs = dnnlib.EasyDict(resolution=opts.resolution)
    c.G_opt_kwargs = dnnlib.EasyDict(class_name="torch.optim.Adam", betas=[0, 0.99], eps=1e-8, lr=0.002)
    c.D_opt_kwargs = dnnlib.EasyDict(class_name="torch.optim.Adam", betas=[0, 0.99], eps=1e-8, lr=0.002)
    c.resume_pkl = opts.resume
    c.loss_kwargs = dnnlib.EasyDict(class_name="training.loss.ProjectedGANLoss")
    c.D_kwargs = dnnlib.EasyDict(class_name="pg_modules.discriminator.ProjectedDiscriminator", diffaug=True,
                                 interp224=True, backbone_kwargs=dnnlib.EasyDict(cout=4, proj_type=2, cond=opts.cond))
    launch_training(c=c, desc=f"{opts.cfg}-standin", outdir=opts.outdir, dry_run=False)
