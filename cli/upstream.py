"""`diffaug-noise run stylegan2|insgen`: upstream's own train.py, patched for Diffusion-GAN at run time."""
from __future__ import annotations

import click

from diffaug_noise.presets import PRESETS


def _shared_options(repo_name: str, env_var: str, noise_sd_default: str, t_max_default: str):
    """The options every upstream command has: where things are, the paper's knobs, shims and trust."""
    options = [
        click.option("--repo", default=None, metavar="PATH", help=f"Your checkout of {repo_name} (not edited). [default: ${env_var}]"),
        click.option("--data", required=True, help="Dataset name (`diffaug-noise data list`) or a zip/folder in upstream's layout."),
        click.option("--data-root", default=None, metavar="DIR",
                     help="Folder of prepared datasets. [default: $DIFFAUG_NOISE_DATA, else ~/.cache/diffaug-noise/data]"),
        click.option("--outdir", required=True, metavar="DIR", help="Where upstream writes its run folders."),
        click.option("--gpus", type=click.IntRange(min=1), default=1, show_default=True,
                     help="GPUs, one process each (upstream spawns them; torch.distributed keeps p identical on all)."),
        click.option("--target", type=float, default=None, help="Controller target for r_d = E[sign D(noised real)]. [default: preset's, 0.6]"),
        click.option("--ts-dist", type=click.Choice(["priority", "uniform"]), default=None, help="Law of t over 1..T. [default: preset's]"),
        click.option("--noise-sd", type=click.FloatRange(min=0, min_open=True), default=None,
                     help=f"Noise std sigma. [default: preset's, {noise_sd_default}]"),
        click.option("--t-max", type=click.IntRange(min=1), default=None, help=f"Largest T (at p = 1). [default: preset's, {t_max_default}]"),
        click.option("--shims/--no-shims", default=True, show_default=True,
                     help="Compatibility shims for current torch/numpy/timm and CPU-only machines (each documented in the adapter)."),
        click.option("--trust-pickle", is_flag=True,
                     help="Allow upstream's --resume PKL: unpickling a snapshot runs code named in it; only for files you trust."),
    ]

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


def _launch(run, data, data_root, outdir, gpus, upstream_args, **kwargs) -> None:
    """Resolve the dataset, hand everything to the adapter's ``run`` and turn setup errors into CLI errors."""
    from diffaug_noise.data import DatasetError, resolve_data
    from diffaug_noise.integrations.upstream import UpstreamError

    try:
        data_path = resolve_data(data, data_root)
        run(["--outdir", outdir, "--data", str(data_path), "--gpus", str(gpus), *upstream_args], **kwargs)
    except (DatasetError, UpstreamError, ValueError) as err:
        raise click.ClickException(str(err))


def _command(name: str, adapter_module: str, repo_name: str, env_var: str, default_aug: str):
    @click.command(name, context_settings={"ignore_unknown_options": True})
    @_shared_options(repo_name, env_var, "0.05 (image units, [-1, 1])", "1000 (500 for insgen)")
    @click.option("--preset", type=click.Choice([p for p in PRESETS if p != "projected_gan"]), default="paper", show_default=True,
                  help=f"Noise and controller settings: paper (our defaults) or the official fork's ({name}).")
    @click.option("--aug", type=click.Choice(["ada", "diffaug", "none"]), default=default_aug, show_default=True,
                  help="Augmentation before the noise: upstream's ADA, DiffAugment (kornia) or none.")
    @click.option("--t-label", type=click.Choice(["embedding", "raw"]), default=None,
                  help="How t enters D's label input. [default: embedding for paper, raw (as the fork) otherwise]")
    @click.argument("upstream_args", nargs=-1, type=click.UNPROCESSED)
    def command(repo, data, data_root, outdir, gpus, target, ts_dist, noise_sd, t_max, shims, trust_pickle, preset, aug,
                t_label, upstream_args):
        import importlib

        adapter = importlib.import_module(adapter_module)
        _launch(adapter.run, data, data_root, outdir, gpus, upstream_args, repo=repo, shims=shims, trust_pickle=trust_pickle,
                preset=preset, target=target, ts_dist=ts_dist, noise_sd=noise_sd, t_max=t_max, aug=aug, t_label=t_label)

    command.help = (f"Train Diffusion-{'StyleGAN2' if name == 'stylegan2' else 'InsGen'} with {repo_name}'s own training loop, "
                    f"networks, metrics and snapshots; no upstream file is edited.\n\nArguments after `--` go to upstream's "
                    f"train.py unchanged (e.g. -- --cfg paper256 --mirror 1 --kimg 25000 --metrics fid50k_full).\n\n"
                    f"\b\nExample:\n  diffaug-noise run {name} --repo ~/{repo_name} --data lsun_bedroom --outdir runs --gpus 8 "
                    f"-- --cfg paper256")
    return command


stylegan2_command = _command("stylegan2", "diffaug_noise.integrations.stylegan2_ada", "stylegan2-ada-pytorch",
                             "DIFFAUG_NOISE_STYLEGAN2_REPO", "ada")
insgen_command = _command("insgen", "diffaug_noise.integrations.insgen", "insgen", "DIFFAUG_NOISE_INSGEN_REPO", "ada")


@click.command("projectedgan", context_settings={"ignore_unknown_options": True})
@_shared_options("projected-gan", "DIFFAUG_NOISE_PROJECTEDGAN_REPO", "0.5 (feature units)", "500")
@click.option("--preset", type=click.Choice(["projected_gan", "paper"]), default="projected_gan", show_default=True,
              help="Noise and controller settings: the official fork's (projected_gan) or the paper's image defaults.")
@click.option("--d-pos", type=click.Choice(["first", "last"]), default="first", show_default=True,
              help="Noise the backbone's feature maps before the random projections (first) or after them (last).")
@click.option("--t-to-d", is_flag=True, help="Feed t to the mini-discriminators (our extension; needs --preset paper).")
@click.option("--pretrained/--no-pretrained", default=True, show_default=True,
              help="ImageNet weights for the EfficientNet backbone; --no-pretrained (random) is for mechanics tests only.")
@click.option("--backbone-weights", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Local tf_efficientnet_lite0 state dict for offline machines (instead of timm's hub).")
@click.argument("upstream_args", nargs=-1, type=click.UNPROCESSED)
def projectedgan_command(repo, data, data_root, outdir, gpus, target, ts_dist, noise_sd, t_max, shims, trust_pickle, preset,
                         d_pos, t_to_d, pretrained, backbone_weights, upstream_args):
    """Train Diffusion ProjectedGAN (noise on the discriminator's features) with projected-gan's own training
    loop, networks, metrics and snapshots; no upstream file is edited.

    Arguments after `--` go to upstream's train.py unchanged; it needs --cfg and --batch.

    \b
    Example:
      diffaug-noise run projectedgan --repo ~/projected-gan --data lsun_church --outdir runs --gpus 8 -- --cfg fastgan --batch 64
    """
    from diffaug_noise.integrations import projected_gan

    _launch(projected_gan.run, data, data_root, outdir, gpus, upstream_args, repo=repo, shims=shims, trust_pickle=trust_pickle,
            preset=preset, d_pos=d_pos, target=target, ts_dist=ts_dist, noise_sd=noise_sd, t_max=t_max, t_to_d=t_to_d,
            pretrained=pretrained, backbone_weights=backbone_weights)
