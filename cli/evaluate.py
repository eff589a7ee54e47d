"""`diffaug-noise eval`: FID / KID / precision / recall of generated images (torch-fidelity)."""
from __future__ import annotations

import contextlib
import pathlib

import click

from diffaug_noise.extras import require
from diffaug_noise.metrics.protocols import METRICS, PROTOCOLS

from .io import DATA_ROOT_HELP, check_device, write_json
from .knob_options import comma_list


@click.command("eval")
@click.option("--real", required=True, help="Dataset name (see `diffaug-noise data list`) or a zip / image folder.")
@click.option("--fake", required=True, type=click.Path(exists=True, path_type=pathlib.Path),
              help="Generated images (zip or folder), or a generator file (.pkl/.pt: an nn.Module with z_dim, "
                   "or a StyleGAN2-ADA snapshot; needs --trust-pickle).")
@click.option("--metrics",
              callback=lambda ctx, param, value: None if value is None else comma_list(value, METRICS, "metric"),
              default=None, help="Comma-separated: fid,kid,precision,recall.  [default: fid, or the protocol's]")
@click.option("--protocol", type=click.Choice(list(PROTOCOLS)), default=None,
              help="A StyleGAN2-ADA metric as the paper's forks report it: its metrics and sample counts (fid50k_full: "
                   "50,000 generated against the whole training set).")
@click.option("--num", type=click.IntRange(min=2), default=None,
              help="Images per side. [default: all real images; all generated images of a folder/zip, as many as the "
                   "real ones from a generator file]")
@click.option("--num-fake", type=click.IntRange(min=2), default=None,
              help="Generated images, overriding --num for that side.")
@click.option("--num-real", type=click.IntRange(min=2), default=None,
              help="Real images, overriding --num: a random subset drawn with --seed when smaller than the dataset.")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=pathlib.Path), default=None,
              help=DATA_ROOT_HELP)
@click.option("--weights", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path), default=None,
              help="Local InceptionV3 weights (weights-inception-2015-12-05-6726825d.pth) for offline machines.")
@click.option("--feature-extractor", default="inception-v3-compat", show_default=True,
              help="inception-v3-compat (FID), or 'digits-classifier': FD_digits, the number `diffaug-noise run "
                   "digits` reports (no download). torch-fidelity's vgg16, clip-* and dinov2-* unpickle their "
                   "weights: they need --trust-pickle.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Images per batch.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="Where to run.")
@click.option("--trust-pickle", is_flag=True,
              help="Allow loading a pickled generator (or an extractor's pickled weights). Unpickling runs code named "
                   "in the file: only for files you trust.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generator's latents and KID subsets.")
@click.option("--cache/--no-cache", default=True, show_default=True,
              help="Reuse the real set's features from an earlier run (cached under the data root, keyed by the data's "
                   "content, the extractor and the count); --no-cache recomputes them.")
@click.option("--repo", type=click.Path(exists=True, file_okay=False, path_type=pathlib.Path), default=None,
              help="The upstream checkout a --fake snapshot was trained with: loaded with it and the shims of its "
                   "adapter. [default: the checkout the run recorded beside its snapshots, one on PYTHONPATH, or the "
                   "adapter's environment variable]")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=pathlib.Path), default=None,
              help="Also write the results to this JSON file.")
def eval_command(real, fake, metrics, protocol, num, num_fake, num_real, data_root, weights, feature_extractor,
                 batch_size, device, trust_pickle, seed, cache, repo, json_path):
    """Compare generated images with a dataset: FID, KID, precision and recall (Kynkäänniemi et al.).

    Prints one summary line and, with --json, writes every number. The InceptionV3 weights
    download on first use; offline, pass --weights or copy the file into torch's hub cache
    (the error message names the folder).
    """
    from diffaug_noise.data import DatasetError
    from diffaug_noise.integrations import UpstreamError, snapshot_shims
    from diffaug_noise.metrics.evaluation import GENERATOR_SUFFIXES, EvaluationError, evaluate

    check_device(device)
    tqdm = require("tqdm", "cli").tqdm
    bars = {}

    def progress(side, done, total):  # feature extraction is most of an evaluation: minutes on a CPU
        if side not in bars:
            for bar in bars.values():
                bar.close()
            bars[side] = tqdm(total=total, desc=f"eval: {side} images", unit="img", leave=False, disable=None)
        bars[side].update(done - bars[side].n)

    try:
        with contextlib.ExitStack() as shims:
            if trust_pickle and fake.is_file() and fake.suffix in GENERATOR_SUFFIXES:  # an upstream snapshot needs
                shims.enter_context(snapshot_shims(fake, repo))  # its checkout and its adapter's shims
            result = evaluate(real, fake, metrics=metrics or ("fid",), protocol=protocol, num=num, num_fake=num_fake,
                              num_real=num_real, data_root=data_root, feature_extractor=feature_extractor,
                              weights=weights, batch_size=batch_size, device=device, trust_pickle=trust_pickle,
                              seed=seed, cache=cache, progress=progress)
    except (DatasetError, EvaluationError, UpstreamError) as err:
        raise click.ClickException(str(err))
    finally:
        for bar in bars.values():
            bar.close()
    if json_path is not None:
        write_json(json_path, {"real": str(real), "fake": str(fake), **result})
    computed = [m for m in METRICS if m in result]
    numbers = ", ".join(f"{m} {result[m]:.4g}" + (f" ± {result['kid_std']:.2g}" if m == "kid" else "")
                        for m in computed)
    click.echo(f"{numbers}  ({result['num_fake']} generated vs {result['num_real']} real, {feature_extractor}"
               + (f", {protocol})" if protocol else ")"))

