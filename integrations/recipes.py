"""The paper's results, one recipe per row: the prepare, train and eval commands that reproduce it here.

Rows are the official Diffusion-GAN README's checkpoint table (model, dataset, resolution, FID), which
matches the paper's Tables 1–3 for the rows the three adapters can train. Settings come from the
official README's example commands where it gives them (CIFAR-10: 4 GPUs, 50,000 kimg, target 0.6
with noise std 0.05 for StyleGAN2; target 0.45, noise std 0.5, batch 64 for ProjectedGAN; InsGen on AFHQ:
8 GPUs, ``--cfg paper512``, 25,000 kimg); elsewhere from upstream's defaults, and the table says so.
GPU-days are StyleGAN2-ADA's own V100 timings (its README, "Expected training time") scaled to the
row's kimg; rows that table does not cover say "–".

Example:
    >>> RECIPES["stylegan2-cifar10"].paper_fid
    3.19
    >>> print(commands(RECIPES["stylegan2-cifar10"], repo="~/sg2", source="~/cifar-10-python.tar.gz")[1])
    diffaug-noise run stylegan2 --repo ~/sg2 --data cifar10 --outdir runs/stylegan2-cifar10 --gpus 4 --preset stylegan2 --aug none --target 0.6 --sigma 0.05 --t-dist priority -- --cfg cifar --kimg 50000
"""
from __future__ import annotations

import dataclasses

# StyleGAN2-ADA README, "Expected training time" (V100, --cfg auto --aug ada): 8-GPU wall time for 25,000 kimg.
_V100_DAYS_8GPU_25K = {256: 1 + 11 / 24, 512: 2 + 22 / 24, 1024: 6 + 3 / 24}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One row of the paper: what to prepare, how to train it with an adapter, and what FID the paper reports."""

    row: str  # the name `diffaug-noise recipe ROW` takes
    model: str  # as the paper names it
    dataset: str  # a registered dataset name
    resolution: int
    paper_fid: float  # the official checkpoint table's FID
    adapter: str  # a registered adapter
    gpus: int
    options: tuple  # our CLI options, as flag/value pairs
    upstream: tuple  # arguments after `--`, for upstream's train.py
    kimg: int
    note: str = ""  # where a setting is not the official one, why

    @property
    def gpu_days(self) -> float | None:
        """Expected V100 GPU-days from StyleGAN2-ADA's table (8 GPUs), scaled to ``kimg``; None if not covered."""
        days = _V100_DAYS_8GPU_25K.get(self.resolution)
        return None if days is None or self.adapter == "projectedgan" else days * 8 * self.kimg / 25_000


def _sg2(dataset, resolution, fid, cfg, gpus, kimg=25_000,
         note="target and noise std: the official CIFAR-10 command's; --cfg and kimg: upstream's (the README gives no other)"):
    return Recipe(f"stylegan2-{dataset.replace('_', '-')}", "Diffusion-StyleGAN2", dataset, resolution, fid, "stylegan2", gpus,
                  ("--preset", "stylegan2", "--aug", "none", "--target", "0.6", "--sigma", "0.05", "--t-dist", "priority"),
                  ("--cfg", cfg, "--kimg", str(kimg)), kimg, note)


def _pg(dataset, resolution, fid, cfg, gpus, kimg=50_000,
        note="target, noise std, batch and kimg: the official CIFAR-10 command's (the README gives no other)"):
    return Recipe(f"projectedgan-{dataset.replace('_', '-')}", "Diffusion-ProjectedGAN", dataset, resolution, fid, "projectedgan",
                  gpus, ("--preset", "projected_gan", "--target", "0.45", "--sigma", "0.5", "--d-pos", "first"),
                  ("--cfg", cfg, "--batch", "64", "--batch-gpu", "16", "--kimg", str(kimg)), kimg, note)


def _insgen(dataset, fid, kimg=25_000):
    return Recipe(f"insgen-{dataset.replace('_', '-')}", "Diffusion-InsGen", dataset, 512, fid, "insgen", 8,
                  ("--preset", "insgen"), ("--cfg", "paper512", "--kimg", str(kimg)), kimg)


_SMALL_FASTGAN = ("the fork trained its FastGAN here; upstream projected-gan's FastGAN needs >= 128 px, so --cfg stylegan2 "
                  "(expect a different FID)")

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
]}


def commands(recipe: Recipe, repo: str = "REPO", source: str = "SOURCE", outdir: str = "runs") -> list[str]:
    """The prepare, train and eval command lines of ``recipe``."""
    run_dir = f"{outdir}/{recipe.row}"
    train = (f"diffaug-noise run {recipe.adapter} --repo {repo} --data {recipe.dataset} --outdir {run_dir} --gpus {recipe.gpus} "
             f"{' '.join(recipe.options)} -- {' '.join(recipe.upstream)}")
    return [f"diffaug-noise data prepare {recipe.dataset} --source {source}",
            train,
            f"diffaug-noise eval --real {recipe.dataset} --fake {run_dir}/<run>/network-snapshot-<kimg>.pkl --trust-pickle "
            f"--protocol fid50k_full --device cuda"]
