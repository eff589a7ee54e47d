"""`diffaug-noise recipe`: the commands that reproduce a row of the paper, with its FID beside them."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import click

from diffaug_noise.integrations.recipes import RECIPES, command_line, commands
from diffaug_noise.knobs import knob

from .knob_options import settings_from, with_knobs


def format_list() -> str:
    lines = [f"{'row':<26} {'model':<24} {'dataset':<14} {'res':>5} {'paper FID':>9} {'GPUs':>5} {'kimg':>7} "
             f"{'V100 GPU-days':>14}",
             "-" * 112]
    for r in RECIPES.values():
        days = "-" if r.gpu_days is None else f"{r.gpu_days:.0f}"
        fid = "-" if r.paper_fid is None else f"{r.paper_fid:.2f}"
        lines.append(f"{r.row:<26} {r.model:<24} {r.dataset:<14} {r.resolution:>5} {fid:>9} {r.gpus:>5} {r.kimg:>7} "
                     f"{days:>14}")
    return "\n".join(lines)


@dataclasses.dataclass
class RecipeCommand:
    """``recipe``'s settings: what goes into the printed commands, and whether to run them."""

    list: bool = knob(False, "Show every row: model, dataset, the paper's FID, GPUs, kimg, GPU-days.", kind=bool)
    repo: str = knob("REPO", "Your upstream checkout, put into the printed commands.", kind=str)
    source: str = knob("SOURCE", "The downloaded dataset, put into the prepare command.", kind=str)
    outdir: str = knob("runs", "Where the training run goes.", kind=str)
    run: bool = knob(False, "Run the prepare (when --source is given) and train commands after printing them; eval "
                            "runs once a snapshot exists, so it is printed only.", kind=bool)


@with_knobs(RecipeCommand)
@click.argument("row", required=False)
@click.command("recipe")
def recipe_command(row, **params):
    """The prepare, train and eval commands for one row of the paper's tables, and the FID it reports.

    \b
    Example:
      diffaug-noise recipe --list
      diffaug-noise recipe stylegan2-lsun-church --repo ~/stylegan2-ada-pytorch --source
      ~/lsun/church_outdoor_train_lmdb
    """
    o = settings_from(RecipeCommand, params)
    repo, source, outdir = o.repo, o.source, o.outdir
    if o.list or row is None:
        click.echo(format_list())
        return
    if row not in RECIPES:
        raise click.BadParameter(f"unknown row {row!r}; `diffaug-noise recipe --list` shows them", param_hint="ROW")
    recipe = RECIPES[row]
    argvs = commands(recipe, repo=repo, source=source, outdir=outdir)
    fid = "not in the paper" if recipe.paper_fid is None else f"the paper's FID {recipe.paper_fid}"
    note = f"; {recipe.note}" if recipe.note else ""
    click.echo(f"# {recipe.model} on {recipe.dataset} ({recipe.resolution} px): {fid}{note}")
    for argv in argvs:
        click.echo(command_line(argv))
    if o.run:
        to_run = argvs[1:2] if source == "SOURCE" else argvs[:2]
        for argv in to_run:  # each value one argument, as given: never joined and split again
            code = subprocess.call([sys.executable, "-m", "diffaug_noise.cli", *argv[1:]])
            if code:
                raise click.ClickException(f"`{command_line(argv)}` exited with {code}")
