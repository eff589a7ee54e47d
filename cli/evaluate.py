"""`diffaug-noise eval`: FID / KID / precision / recall of generated images (torch-fidelity)."""
from __future__ import annotations

import contextlib
import dataclasses
import pathlib

import click

from diffaug_noise.extras import require
from diffaug_noise.knobs import knob
from diffaug_noise.metrics.eval_settings import EvalInputs, EvalSettings
from diffaug_noise.metrics.protocols import METRICS

from .io import check_device, write_json
from .knob_options import values, with_knobs


@dataclasses.dataclass
class EvalCommand:
    """What ``eval`` takes besides :func:`~diffaug_noise.metrics.evaluation.evaluate`'s own settings."""

    repo: pathlib.Path = knob(None, "The upstream checkout a --fake snapshot was trained with: loaded with it and the "
                                    "shims of its adapter. [default: the checkout the run recorded beside its "
                                    "snapshots, one on PYTHONPATH, or the adapter's environment variable]", kind="dir")
    json: pathlib.Path = knob(None, "Also write the results to this JSON file.", kind="file")


@with_knobs(EvalCommand)
@with_knobs(EvalSettings)
@with_knobs(EvalInputs)
@click.command("eval")
def eval_command(**params):
    """Compare generated images with a dataset: FID, KID, precision and recall (Kynkäänniemi et al.).

    Prints one summary line and, with --json, writes every number. The InceptionV3 weights
    download on first use; offline, pass --weights or copy the file into torch's hub cache
    (the error message names the folder).
    """
    from diffaug_noise.data import DatasetError
    from diffaug_noise.integrations import UpstreamError, snapshot_shims
    from diffaug_noise.metrics.evaluation import GENERATOR_SUFFIXES, EvaluationError, evaluate

    inputs, settings, command = (values(cls, params) for cls in (EvalInputs, EvalSettings, EvalCommand))
    fake = inputs["fake"]
    check_device(settings["device"])
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
            if settings["trust_pickle"] and fake.is_file() and fake.suffix in GENERATOR_SUFFIXES:  # an upstream
                shims.enter_context(snapshot_shims(fake, command["repo"]))  # snapshot: its checkout and shims
            result = evaluate(**inputs, progress=progress, **settings)
    except (DatasetError, EvaluationError, UpstreamError) as err:
        raise click.ClickException(str(err))
    finally:
        for bar in bars.values():
            bar.close()
    if command["json"] is not None:
        write_json(command["json"], {"real": str(inputs["real"]), "fake": str(fake), **result})
    computed = [m for m in METRICS if m in result]
    numbers = ", ".join(f"{m} {result[m]:.4g}" + (f" ± {result['kid_std']:.2g}" if m == "kid" else "")
                        for m in computed)
    click.echo(f"{numbers}  ({result['num_fake']} generated vs {result['num_real']} real, "
               f"{settings['feature_extractor']}" + (f", {settings['protocol']})" if settings["protocol"] else ")"))

