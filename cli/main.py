"""Entry point of the `diffaug-noise` console script."""
from __future__ import annotations

import click

from .bench import bench_command
from .data import data_group
from .digits import digits_command
from .evaluate import eval_command
from .show import show_group
from .toy import toy_command
from .upstream import insgen_command, projectedgan_command, stylegan2_command


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="diffaug-noise")
def main():
    """Diffusion-GAN as one composable layer: adaptive diffusion noise before the discriminator.

    Start with `diffaug-noise run digits` (real limited data on a CPU, about two minutes) or
    `diffaug-noise run toy` (25 Gaussians, about a minute); `diffaug-noise show` draws
    what the discriminator sees; `diffaug-noise data` prepares the paper's datasets;
    `diffaug-noise eval` computes FID / KID / precision / recall; `diffaug-noise bench` times the noise.
    """


@main.group("run")
def run_group():
    """Train: `digits` and `toy` are built-in CPU demos; upstream codebases get their own backends."""


run_group.add_command(digits_command)
run_group.add_command(toy_command)
run_group.add_command(stylegan2_command)
run_group.add_command(insgen_command)
run_group.add_command(projectedgan_command)
main.add_command(show_group)
main.add_command(bench_command)
main.add_command(data_group)
main.add_command(eval_command)
