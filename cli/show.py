"""`diffaug-noise show`: pictures of what the discriminator sees, and the paper's Fig. 2."""
from __future__ import annotations

import dataclasses
import pathlib

import click
import torch

import diffaug_noise as dn
from diffaug_noise.knobs import knob
from diffaug_noise.settings import setting

from . import plots
from .io import ensure_outdir
from .knob_options import settings_from, with_knobs


def demo_image(size: int) -> torch.Tensor:
    """A procedural RGB test card in [-1, 1]: gradient sky, a disc, a striped floor. ``[1, 3, size, size]``."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    img = torch.stack([0.2 + 0.5 * yy, 0.4 + 0.4 * yy, 0.9 - 0.3 * yy])
    disc = ((xx - 0.62) ** 2 + (yy - 0.35) ** 2) < 0.04
    img[:, disc] = torch.tensor([0.95, 0.75, 0.1]).unsqueeze(1)
    floor = yy > 0.7
    stripes = ((xx * 12).floor() % 2 == 0) & floor
    img[:, floor] = torch.tensor([0.3, 0.6, 0.2]).unsqueeze(1)
    img[:, stripes] = torch.tensor([0.15, 0.4, 0.1]).unsqueeze(1)
    return (img * 2 - 1).unsqueeze(0)


def load_image(path: pathlib.Path, size: int) -> torch.Tensor:
    """An image file as ``[1, 3, size, size]`` in [-1, 1] (center-cropped, resized with Pillow)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            side = min(im.size)
            left, top = (im.width - side) // 2, (im.height - side) // 2
            im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
            arr = np.asarray(im, dtype=np.float32) / 127.5 - 1
    except (UnidentifiedImageError, OSError) as err:
        raise click.BadParameter(f"cannot read {str(path)!r} as an image ({err}); pass a PNG/JPEG or use --demo",
                                 param_hint="--input")
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0)


@click.group("show")
def show_group():
    """Figures: what D sees at several t (`noise`), and JS divergence vs theta (`js`)."""


@dataclasses.dataclass
class ShowNoise:
    """``show noise``'s settings."""

    input: pathlib.Path = knob(None, "Image to noise (PNG/JPEG); center-cropped to a square.", kind="path")
    demo: bool = knob(False, "Use a built-in procedural test image instead of --input.", kind=bool)
    preset: str = knob("paper", "Noise settings (sigma, schedule, t range) to visualise.", kind=str,
                       choices=tuple(dn.PRESETS))
    ts: tuple = knob((0, 10, 50, 100, 200, 500, 1000), "Timesteps to show; values above the preset's t_max are "
                                                       "dropped.", kind="ints", minimum=0)
    size: int = knob(128, "Side of the image in pixels.", kind=int, minimum=16, maximum=1024)
    seed: int = knob(0, "Seed of eps (shared by all columns).", kind=int, minimum=0)
    out: pathlib.Path = knob(pathlib.Path("noise.png"), "PNG to write.", kind="file")


@with_knobs(ShowNoise)
@show_group.command("noise")
def show_noise(**params):
    """A row of one image noised at several t, as the discriminator sees it (pixels in [-1, 1])."""
    o = settings_from(ShowNoise, params)
    input_path, demo, preset, ts, size, seed, out_path = o.input, o.demo, o.preset, o.ts, o.size, o.seed, o.out
    if (input_path is None) == (not demo):
        raise click.UsageError("give exactly one of --input IMG or --demo")
    x = demo_image(size) if demo else load_image(input_path, size)
    noise = dn.DiffusionNoise.preset(preset, p=1.0)
    ts = [t for t in ts if t <= noise.T]
    if not ts:
        raise click.BadParameter(f"every timestep is above t_max = {noise.T} of preset {preset!r}", param_hint="--ts")
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    t_shape = tuple(x.shape[:2]) if noise.per_channel else (1,)
    rows = [noise.apply_transform(x, torch.full(t_shape, t, dtype=torch.int64), eps) for t in ts]
    plt = plots.pyplot()
    if plt is None:
        raise click.ClickException("show needs matplotlib: pip install 'diffaug-noise[plot]'")
    ensure_outdir(out_path.parent)
    fig, axes = plt.subplots(1, len(ts), figsize=(2.0 * len(ts), 2.3))
    axes = [axes] if len(ts) == 1 else axes
    for ax, t, y in zip(axes, ts, rows):
        ax.imshow(((y[0].permute(1, 2, 0) + 1) / 2).clamp(0, 1).numpy())
        ax.set_title(f"t = {t}", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"preset {preset!r}: sigma = {noise.sigma:g}, {noise.schedule} betas "
                 f"{noise.beta_start:g}..{noise.beta_end:g}, T = {noise.T}", fontsize=9)
    plots.save(fig, out_path)
    plt.close(fig)
    click.echo(f"wrote {out_path}")


@dataclasses.dataclass
class ShowJs:
    """``show js``'s settings."""

    preset: str = knob("paper", "Noise settings whose tables give sqrt(abar_t) and the noise scale.", kind=str,
                       choices=tuple(dn.PRESETS))
    sigma: float = setting("sigma", None, note="[default: the preset's]")
    ts: tuple = knob((0, 1, 10, 100, 500, 1000), "Timesteps, one curve each.", kind="ints", minimum=0)
    theta_max: float = knob(0.5, "Plot theta in [-theta_max, theta_max].", kind=float, minimum=0.0,
                            exclusive_minimum=True)
    out: pathlib.Path = knob(pathlib.Path("js.png"), "PNG to write.", kind="file")


@with_knobs(ShowJs)
@show_group.command("js")
def show_js(**params):
    """JS divergence between noised real (point mass at 0) and fake (at theta) vs theta: the paper's Fig. 2.

    At t = 0 it is log 2 for every theta != 0 (no gradient for the generator); for t > 0 it is
    smooth in theta with a useful gradient everywhere (Theorem 1).
    """
    o = settings_from(ShowJs, params)
    preset, ts, theta_max, out_path = o.preset, o.ts, o.theta_max, o.out
    overrides = {} if o.sigma is None else {"sigma": o.sigma}
    noise = dn.DiffusionNoise.preset(preset, p=1.0, **overrides)
    ts = [t for t in ts if t <= noise.T]
    plt = plots.pyplot()
    if plt is None:
        raise click.ClickException("show needs matplotlib: pip install 'diffaug-noise[plot]'")
    thetas = torch.linspace(-theta_max, theta_max, 401, dtype=torch.float64).tolist()
    ensure_outdir(out_path.parent)
    fig, ax = plt.subplots(figsize=(6, 4))
    for t in ts:
        a = noise.sqrt_abar[t].item()
        s = noise.sqrt_one_minus_abar[t].item() * noise.sigma
        ax.plot(thetas, [dn.theory.js_divergence_point_masses(th, a, s) for th in thetas], label=f"t = {t}")
    ax.set_xlabel("theta (fake point mass position; real at 0)")
    ax.set_ylabel("JS divergence of the noised laws")
    ax.set_title(f"preset {preset!r}, sigma = {noise.sigma:g}")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    plots.save(fig, out_path)
    plt.close(fig)
    click.echo(f"wrote {out_path}")
