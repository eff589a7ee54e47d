"""The paper's results, one recipe per row: the prepare, train and eval commands that reproduce it here.

Rows are the official Diffusion-GAN README's checkpoint table (model, dataset, resolution, FID), which
matches the paper's Tables 1–3 for the rows the three adapters can train. Settings come from the
official README's example commands where it gives them (CIFAR-10: 4 GPUs, 50,000 kimg, target 0.6
with noise std 0.05 for StyleGAN2; target 0.45, noise std 0.5, batch 64 for ProjectedGAN; InsGen on AFHQ:
8 GPUs, ``--cfg paper512``, 25,000 kimg); elsewhere from upstream's defaults, and the table says so.
GPU-days are StyleGAN2-ADA's own V100 timings (its README, "Expected training time") scaled to the
row's kimg; rows that table does not cover say "–".

The R3GAN rows are not the paper's either: they are brownvc/R3GAN's README commands (its presets), with
the layer added and ``--kimg 20000``, where its schedules end (their ``decay_nimg``; upstream's own
default runs unbounded).

The StyleGAN3 rows are not the paper's (it has none): they are NVlabs/stylegan3's recommended
configurations (its ``docs/configs.md``, 8 GPUs) for the datasets registered here, with the layer
added; their FID column is empty, their GPU-days come from that table's V100 s/kimg. StyleGAN3's
AFHQ rows used AFHQv2; the registered ``afhq_*`` sets are the first AFHQ release.

Example:
    >>> RECIPES["stylegan2-cifar10"].paper_fid
    3.19
    >>> import textwrap
    >>> train = commands(RECIPES["stylegan2-cifar10"], repo="~/sg2", source="~/cifar-10-python.tar.gz")[1]
    >>> print(textwrap.fill(command_line(train)))
    diffaug-noise run stylegan2 --repo ~/sg2 --data cifar10 --outdir
    runs/stylegan2-cifar10 --gpus 4 --preset stylegan2 --aug none --target
    0.6 --sigma 0.05 --t-dist priority -- --cfg cifar --kimg 50000
"""
from __future__ import annotations

import dataclasses
import shlex

# StyleGAN2-ADA README, "Expected training time" (V100, --cfg auto --aug ada): 8-GPU wall time for 25,000 kimg.
_V100_DAYS_8GPU_25K = {256: 1 + 11 / 24, 512: 2 + 22 / 24, 1024: 6 + 3 / 24}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One row of the paper: what to prepare, how to train it with an adapter, and what FID the paper reports."""

    row: str  # the name `diffaug-noise recipe ROW` takes
    model: str  # as the paper names it
    dataset: str  # a registered dataset name
    resolution: int
    paper_fid: float | None  # the official checkpoint table's FID; None for rows the paper does not have
    adapter: str  # a registered adapter
    gpus: int
    options: tuple  # our CLI options, as flag/value pairs
    upstream: tuple  # arguments after `--`, for upstream's train.py
    kimg: int
    note: str = ""  # where a setting is not the official one, why
    v100_sec_per_kimg: float | None = None  # upstream's own 8-GPU V100 timing of this config, where it gives one

    @property
    def gpu_days(self) -> float | None:
        """Expected V100 GPU-days: upstream's s/kimg of this config, else StyleGAN2-ADA's table (8 GPUs), for
        ``kimg``."""
        if self.v100_sec_per_kimg is not None:
            return self.v100_sec_per_kimg * self.kimg * self.gpus / 86_400
        days = _V100_DAYS_8GPU_25K.get(self.resolution)
        return None if days is None or self.adapter != "stylegan2" else days * 8 * self.kimg / 25_000


def _sg2(dataset, resolution, fid, cfg, gpus, kimg=25_000,
         note="target and noise std: the official CIFAR-10 command's; --cfg and kimg: upstream's (the README gives no "
              "other)"):
    return Recipe(f"stylegan2-{dataset.replace('_', '-')}", "Diffusion-StyleGAN2", dataset, resolution, fid,
                  "stylegan2", gpus,
                  ("--preset", "stylegan2", "--aug", "none", "--target", "0.6", "--sigma", "0.05", "--t-dist",
                   "priority"),
                  ("--cfg", cfg, "--kimg", str(kimg)), kimg, note)


def _pg(dataset, resolution, fid, cfg, gpus, kimg=50_000,
        note="target, noise std, batch and kimg: the official CIFAR-10 command's (the README gives no other)"):
    return Recipe(f"projectedgan-{dataset.replace('_', '-')}", "Diffusion-ProjectedGAN", dataset, resolution, fid,
                  "projectedgan",
                  gpus, ("--preset", "projected_gan", "--target", "0.45", "--sigma", "0.5", "--d-pos", "first"),
                  ("--cfg", cfg, "--batch", "64", "--batch-gpu", "16", "--kimg", str(kimg)), kimg, note)


def _insgen(dataset, fid, kimg=25_000):
    return Recipe(f"insgen-{dataset.replace('_', '-')}", "Diffusion-InsGen", dataset, 512, fid, "insgen", 8,
                  ("--preset", "insgen"), ("--cfg", "paper512", "--kimg", str(kimg)), kimg)


def _sg3(cfg, dataset, resolution, gamma, sec_per_kimg, extra=()):
    return Recipe(f"{cfg}-{dataset.replace('_', '-')}", f"Diffusion-StyleGAN3-{cfg[-1].upper()}", dataset, resolution,
                  None, "stylegan3", 8, ("--preset", "paper"),
                  ("--cfg", cfg, "--batch", "32", "--gamma", f"{gamma:g}", "--mirror", "1", *extra, "--kimg", "25000"),
                  25_000,
                  "upstream's recommended config (stylegan3 docs/configs.md); no Diffusion-GAN result to compare",
                  sec_per_kimg)


def _r3gan(dataset, resolution, preset, batch, cond=False):
    return Recipe(f"r3gan-{dataset.replace('_', '-')}", "Diffusion-R3GAN", dataset, resolution, None, "r3gan", 8, (),
                  ("--preset", preset, "--batch", str(batch), "--mirror", "1", "--aug", "1",
                   *(("--cond", "1") if cond else ()), "--tick", "1", "--snap", "200", "--kimg", "20000"), 20_000,
                  "R3GAN's README command (no Diffusion-GAN result to compare); --kimg where its schedules end")


_SMALL_FASTGAN = ("the fork trained its FastGAN here; upstream projected-gan's FastGAN needs >= 128 px, so --cfg "
                  "stylegan2 (expect a different FID)")

RECIPES: dict[str, Recipe] = {r.row: r for r in [
    _sg2("cifar10", 32, 3.19, "cifar", 4, kimg=50_000, note=""),
    _sg2("celeba", 64, 1.69, "auto", 4),
    _sg2("stl10", 64, 11.53, "auto", 4),
    _sg2("lsun_bedroom", 256, 3.65, "paper256", 8),
    _sg2("lsun_church", 256, 3.17, "paper256", 8),
    _sg2("ffhq", 1024, 2.83, "stylegan2", 8),
    _pg("cifar10", 32, 2.54, "stylegan2", 4, note=_SMALL_FASTGAN),
    _pg("stl10", 64, 6.91, "stylegan2", 4, note=_SMALL_FASTGAN),
    _pg("lsun_bedroom", 256, 1.43, "fastgan", 8),
    _pg("lsun_church", 256, 1.85, "fastgan", 8),
    _insgen("afhq_cat", 2.40),
    _insgen("afhq_dog", 4.83),
    _insgen("afhq_wild", 1.51),
    _sg3("stylegan3-t", "ffhq", 1024, 32.8, 28.71, ("--aug", "noaug")),
    _sg3("stylegan3-r", "ffhq", 1024, 32.8, 34.12, ("--aug", "noaug")),
    _sg3("stylegan3-t", "afhq_cat", 512, 8.2, 18.47),
    _sg3("stylegan3-t", "afhq_dog", 512, 8.2, 18.47),
    _sg3("stylegan3-t", "afhq_wild", 512, 8.2, 18.47),
    _sg3("stylegan3-r", "afhq_cat", 512, 16.4, 20.44),
    _sg3("stylegan3-t", "lsun_church", 256, 2, 13.04),
    _sg3("stylegan3-t", "lsun_bedroom", 256, 2, 13.04),
    _r3gan("cifar10", 32, "CIFAR10", 512, cond=True),
    _r3gan("ffhq_64", 64, "FFHQ-64", 256),
    _r3gan("ffhq_256", 256, "FFHQ-256", 256),
]}


def commands(recipe: Recipe, repo: str = "REPO", source: str = "SOURCE", outdir: str = "runs") -> list[list[str]]:
    """The prepare, train and eval commands of ``recipe``, each an argument list holding every value whole.

    A value is one argument whatever it holds (spaces, quotes, ``--help``, a leading ``-``): the
    lists are run as they are, never joined and split again; :func:`command_line` prints one.
    """
    run_dir = f"{outdir}/{recipe.row}"
    return [["diffaug-noise", "data", "prepare", recipe.dataset, "--source", source],
            ["diffaug-noise", "run", recipe.adapter, "--repo", repo, "--data", recipe.dataset, "--outdir", run_dir,
             "--gpus", str(recipe.gpus), *recipe.options, "--", *recipe.upstream],
            ["diffaug-noise", "eval", "--real", recipe.dataset, "--fake",
             f"{run_dir}/<run>/network-snapshot-<kimg>.pkl", "--trust-pickle", "--protocol", "fid50k_full", "--device",
             "cuda"]]


def command_line(argv: list[str]) -> str:
    """``argv`` as a shell line that gives back the same arguments; a leading ``~/`` stays unquoted, so it expands.

    Example:
        >>> print(command_line(["diffaug-noise", "run", "stylegan2", "--repo", "~/my repo", "--data", "/x --help"]))
        diffaug-noise run stylegan2 --repo ~/'my repo' --data '/x --help'
    """
    return " ".join("~/" + shlex.quote(arg[2:]) if arg.startswith("~/") and arg[2:] else shlex.quote(arg)
                    for arg in argv)
