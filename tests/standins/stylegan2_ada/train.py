import json
import os

import click
import dnnlib
import torch
from training import training_loop


def setup_training_loop_kwargs(gpus=None, data=None, kimg=None, batch=None, aug=None, target=None, resume=None,
                               cl=False, **unused):
    args = dnnlib.EasyDict(num_gpus=gpus or 1, batch_size=batch or 4, batch_gpu=2, total_kimg=kimg or 0.032, data=data)
    args.G_kwargs = dnnlib.EasyDict(class_name="training.networks.Generator", z_dim=4)
    args.D_kwargs = dnnlib.EasyDict(class_name="training.networks.Discriminator", channel_base=16,
                                    mapping_kwargs=dnnlib.EasyDict())
    args.loss_kwargs = dnnlib.EasyDict(class_name="training.loss.StyleGAN2Loss", r1_gamma=1.0)
    args.ada_target = None
    args.augment_p = 0
    if (aug or "ada") == "ada":
        args.ada_target = 0.6 if target is None else target
        args.augment_kwargs = dnnlib.EasyDict(class_name="training.augment.AugmentPipe")
    args.resume_pkl = resume
    args.ema_rampup = None if resume else 0.05  # upstream switches the ramp-up off when resuming
    if cl:  # InsGen's train.py swaps the loss class and adds the heads
        args.loss_kwargs.class_name = "training.contrastive_loss.StyleGAN2LossCL"
        args.DHead_kwargs = dnnlib.EasyDict(class_name="training.contrastive_head.CLHead", inplanes=16)
    return "standin", args


def subprocess_fn(rank, args, temp_dir):
    return training_loop.training_loop(rank=rank, **args)


RESULTS = []  # what the last in-process run returned (D, loss), for the contract tests


@click.command()
@click.option("--outdir", required=True)
@click.option("--data", required=True)
@click.option("--gpus", type=int)
@click.option("--kimg", type=float)
@click.option("--batch", type=int)
@click.option("--aug", type=click.Choice(["noaug", "ada", "fixed"]))
@click.option("--target", type=float)
@click.option("--resume")
@click.option("--cl", is_flag=True)
def main(outdir, **config_kwargs):
    desc, args = setup_training_loop_kwargs(**config_kwargs)
    args.run_dir = os.path.join(outdir, desc)
    os.makedirs(args.run_dir, exist_ok=True)
    with open(os.path.join(args.run_dir, "training_options.json"), "wt") as f:
        json.dump(args, f, indent=2)
    if args.num_gpus == 1:
        RESULTS.append(subprocess_fn(rank=0, args=args, temp_dir=outdir))
    else:
        torch.multiprocessing.spawn(fn=subprocess_fn, args=(args, outdir), nprocs=args.num_gpus)
