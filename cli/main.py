"""Entry point of the `diffaug-noise` console script."""
from __future__ import annotations

import errno
import os
import warnings

import click

from diffaug_noise.integrations import ADAPTERS

from .bench import bench_command
from .data import data_group
from .digits import digits_command
from .evaluate import eval_command
from .guidance import guidance_command
from .recipe import recipe_command
from .show import show_group
from .toy import toy_command
from .upstream import adapter_command


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def one_line(err: OSError) -> str:
    """What an ``OSError`` that reached the top means, in one line, with the path when it has one.

    Our own writes raise :class:`~diffaug_noise.checkpoint.StorageError`, which already names the
    path and the fix; anything else (upstream's writes, a source that cannot be read) is described here.
    """
    from diffaug_noise.checkpoint import StorageError
    from diffaug_noise.data.sources import unreadable_image

    if isinstance(err, StorageError):
        return str(err)
    if unreadable_image(err) is not None:  # PIL's, from a data loader (upstream's reads the --data folder itself)
        return unreadable_image(err)
    where = f" ({err.filename})" if err.filename else ""
    name = errno.errorcode.get(err.errno, type(err).__name__) if err.errno else type(err).__name__
    return (f"{err.strerror or err}{where} [{name}]; check free space and permissions of the folders this command "
            f"reads and writes (DIFFAUG_NOISE_TRACEBACK=1 shows where it happened)")


class Main(click.Group):
    """The top group: a missing extra, a full or read-only disk or a denied path end the command in one line.

    ``DIFFAUG_NOISE_TRACEBACK=1`` lets the exception through, traceback and all.
    """

    def invoke(self, ctx):
        from diffaug_noise.extras import MissingExtraError

        try:
            return super().invoke(ctx)
        except MissingExtraError as err:
            raise click.ClickException(str(err)) from None
        except OSError as err:
            if os.environ.get("DIFFAUG_NOISE_TRACEBACK"):
                raise
            raise click.ClickException(one_line(err)) from None


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="diffaug-noise")
def main():
    """Diffusion-GAN as one composable layer: adaptive diffusion noise before the discriminator.

    Start with `diffaug-noise run digits` (real limited data on a CPU, about two minutes) or
    `diffaug-noise run toy` (25 Gaussians, about a minute); `diffaug-noise show` draws
    what the discriminator sees; `diffaug-noise data` prepares the paper's datasets;
    `diffaug-noise eval` computes FID / KID / precision / recall; `diffaug-noise bench` times the noise.
    """
    warnings.formatwarning = _one_line_warning  # a user reads one line per warning, not our source


class RunGroup(click.Group):
    """`run`: the built-in demos, then one command per registered adapter, looked up when asked for.

    Reading :data:`~diffaug_noise.integrations.ADAPTERS` at call time (not at import) means an
    adapter registered by a plugin or a test is a command without touching this file.
    """

    def list_commands(self, ctx):
        return super().list_commands(ctx) + [name for name in ADAPTERS if name not in self.commands]

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is None and name in ADAPTERS:
            command = adapter_command(ADAPTERS[name])
        return command


@main.group("run", cls=RunGroup)
def run_group():
    """Train: `digits`, `toy` and `guidance` are built-in CPU demos; each upstream codebase has its adapter's
    command."""


run_group.add_command(digits_command)
run_group.add_command(toy_command)
run_group.add_command(guidance_command)
main.add_command(show_group)
main.add_command(bench_command)
main.add_command(data_group)
main.add_command(eval_command)
main.add_command(recipe_command)
