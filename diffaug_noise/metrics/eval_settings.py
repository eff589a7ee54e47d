"""What ``eval`` and :func:`~diffaug_noise.metrics.evaluation.evaluate` take, flag for flag; importable without
torch-fidelity (the CLI builds its options from here before anything needs the ``eval`` extra)."""
from __future__ import annotations

import dataclasses
import pathlib

from ..data.datasets import data_root_setting
from ..knobs import check_knobs, knob
from .protocols import METRICS, PROTOCOLS

INCEPTION = "inception-v3-compat"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


class EvaluationError(RuntimeError):
    """Evaluation cannot run (weights unavailable, bad input); the message says how to fix it."""


@dataclasses.dataclass(frozen=True)
class EvalInputs:
    """What :func:`evaluate` compares: ``eval``'s ``--real`` and ``--fake`` (from Python, ``fake`` may also be a
    generator module)."""

    real: str = knob(None, "Dataset name (see `diffaug-noise data list`) or a zip / image folder.", kind=str,
                     required=True)
    fake: pathlib.Path = knob(None, "Generated images (zip or folder), or a generator file (.pkl/.pt: an nn.Module "
                                    "with z_dim, or an upstream snapshot; needs --trust-pickle).", kind="exists",
                              required=True)


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """How :func:`evaluate` compares them: ``eval``'s options, flag for flag."""

    metrics: tuple = knob(("fid",), "Comma-separated: fid, kid, precision, recall (a --protocol names its own).",
                          kind="list", choices=METRICS)
    protocol: str = knob(None, "A StyleGAN2-ADA metric as the paper's forks report it: its metrics and sample counts "
                               "(fid50k_full: 50,000 generated against the whole training set).", kind=str,
                         choices=tuple(PROTOCOLS))
    num: int = knob(None, "Images per side. [default: all real images; all generated images of a folder/zip, as many "
                          "as the real ones from a generator file]", kind=int, minimum=2, why="FID needs a covariance")
    num_fake: int = knob(None, "Generated images, overriding --num for that side.", kind=int, minimum=2,
                         why="FID needs a covariance")
    num_real: int = knob(None, "Real images, overriding --num: a random subset drawn with --seed when smaller than the "
                               "dataset.", kind=int, minimum=2, why="FID needs a covariance")
    data_root: pathlib.Path = data_root_setting()
    weights: pathlib.Path = knob(None, f"Local weights of the feature extractor ({INCEPTION_FILE} for FID) for offline "
                                       "machines.", kind="path")
    feature_extractor: str = knob(INCEPTION, "inception-v3-compat (FID), or digits-classifier: FD_digits, the "
                                             "number `diffaug-noise run digits` reports (no download). "
                                             "torch-fidelity's vgg16, clip-* and dinov2-* unpickle their weights: they "
                                             "need --trust-pickle.", kind=str)
    batch_size: int = knob(64, "Images per feature-extractor batch.", kind=int, minimum=1)
    device: str = knob("cpu", "Where to run.", kind=str, choices=("cpu", "cuda"))
    trust_pickle: bool = knob(False, "Allow loading a pickled generator (or an extractor's pickled weights). "
                                     "Unpickling runs code named in the file: only for files you trust.", kind=bool)
    seed: int = knob(0, "Seed of the generator's latents, the real subset and KID's subsets.", kind=int, minimum=0)
    cache: bool = knob(True, "Reuse the real set's features from an earlier run (cached under the data root, keyed by "
                             "the data's content, the extractor and the count); --no-cache recomputes them.", kind=bool)

    def __post_init__(self):
        try:
            check_knobs(self)
        except (TypeError, ValueError) as err:  # one kind of error for every bad input to evaluate
            raise EvaluationError(str(err)) from None


EvalOptions = EvalSettings  # the earlier name (CHANGELOG)

__all__ = ["INCEPTION", "INCEPTION_FILE", "EvalInputs", "EvalOptions", "EvalSettings", "EvaluationError"]
