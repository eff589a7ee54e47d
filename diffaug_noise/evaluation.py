r"""FID, KID, precision and recall of generated images against a dataset, through torch-fidelity.

- FID (Heusel et al. 2017): :math:`\|\mu_r-\mu_g\|^2 + \mathrm{tr}(\Sigma_r+\Sigma_g-2(\Sigma_r\Sigma_g)^{1/2})`
  of InceptionV3 pool features.
- KID (Bińkowski et al. 2018): unbiased MMD² with a cubic polynomial kernel, mean (and std) over subsets.
- Precision and recall (Kynkäänniemi et al. 2019): the share of generated samples inside the real
  features' k-NN balls (k = 3), and vice versa. Recall is what the paper reports beside FID.

Inputs: ``real`` is a registered dataset name or a path (zip or folder, see
:mod:`diffaug_noise.data`); ``fake`` is a folder/zip of images or a generator file. A generator file
is a pickle (``trust_pickle=True`` needed: unpickling runs code) holding an ``nn.Module`` or a
StyleGAN2-ADA-style snapshot dict (``G_ema`` is used); it is called as ``G(z, c)`` when it has a
``c_dim`` attribute (random one-hot classes) and ``G(z)`` otherwise, with ``z ~ N(0, I)`` of size
``G.z_dim``, and must return images in [-1, 1]. Upstream snapshots also need the upstream code
importable (its checkout on ``PYTHONPATH``).

Offline machines: the InceptionV3 weights (``weights-inception-2015-12-05-6726825d.pth``, 91 MB)
come from torch-fidelity's GitHub release into torch's hub cache on first use. Copy the file into
``<torch hub dir>/checkpoints/`` (see :func:`inception_weights_cache`) or pass ``weights=PATH``.

Example (no download: a feature extractor registered by the caller):
    >>> import tempfile, pathlib, PIL.Image, numpy as np, torch_fidelity
    >>> from torch_fidelity.feature_extractor_base import FeatureExtractorBase
    >>> class Means(FeatureExtractorBase):  # per-channel means and spreads as 6 "features"
    ...     def __init__(self, name, features_list, **kwargs):
    ...         super().__init__(name, features_list)
    ...     @staticmethod
    ...     def get_provided_features_list():
    ...         return ("stats",)
    ...     @staticmethod
    ...     def get_default_feature_layer_for_metric(metric):
    ...         return "stats"
    ...     @staticmethod
    ...     def can_be_compiled():
    ...         return False
    ...     def forward(self, x):
    ...         x = x.float()
    ...         return (torch.cat([x.mean((2, 3)), x.std((2, 3))], 1),)
    >>> torch_fidelity.register_feature_extractor("doc-means", Means)
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> rng = np.random.default_rng(0)
    >>> for i in range(40):
    ...     PIL.Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    >>> result = evaluate(folder, folder, metrics=("fid",), feature_extractor="doc-means")
    >>> abs(result["fid"]) < 1e-3
    True
"""
from __future__ import annotations

import hashlib
import pathlib
import pickle
import zipfile

import torch

from .extras import require

torch_fidelity = require("torch_fidelity", "eval")
from torch_fidelity.generative_model_base import GenerativeModelBase  # noqa: E402

from .checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from .data.registry import DatasetError, resolve_data  # noqa: E402
from .data.registry import data_root as data_root_of  # noqa: E402
from .data.sources import ImageDataset  # noqa: E402
from .protocols import METRICS, PROTOCOLS  # noqa: E402
from .digits import fidelity as _digits_fidelity  # noqa: E402,F401  (registers the "digits-classifier" extractor)

INCEPTION = "inception-v3-compat"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
GENERATOR_SUFFIXES = (".pkl", ".pt", ".pth")


class EvaluationError(RuntimeError):
    """Evaluation cannot run (weights unavailable, bad input); the message says how to fix it."""


def inception_weights_cache() -> pathlib.Path:
    """Where torch-fidelity looks for (and downloads) the InceptionV3 weights."""
    return pathlib.Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def evaluate(
    real,  # dataset name, or path to a zip / image folder
    fake,  # path to a zip / image folder of generated images, or a generator file
    metrics=("fid",),  # any of fid, kid, precision, recall
    num: int | None = None,  # images per side (default: all real images; generated: see num_fake)
    num_fake: int | None = None,  # generated images, overriding num (default: all of a folder/zip, as many as the real ones from a generator)
    num_real: int | None = None,  # real images, overriding num: a random subset drawn with `seed` when smaller than the set
    protocol: str | None = None,  # a name of PROTOCOLS: its metrics and counts (num_fake/num_real given here win)
    cache: bool = True,  # reuse the real set's features from an earlier call (see real_cache_name)
    data_root=None,  # where registered datasets are prepared (see diffaug_noise.data)
    feature_extractor: str = INCEPTION,  # a torch-fidelity feature extractor name
    weights=None,  # local file of the feature extractor's weights (offline machines)
    batch_size: int = 64,  # images per feature-extractor batch
    device: str = "cpu",  # "cpu" or "cuda"
    trust_pickle: bool = False,  # allow unpickling a generator file (runs code named in it)
    seed: int = 0,  # seed of the generator's latents and of KID's subsets
    verbose: bool = False,  # torch-fidelity's progress output
) -> dict:
    """Compute ``metrics`` of ``fake`` against ``real``; returns ``{metric: value, ...}`` plus counts."""
    if protocol is not None:
        if protocol not in PROTOCOLS:
            raise EvaluationError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
        spec = PROTOCOLS[protocol]
        metrics = spec["metrics"]
        num_fake = num_fake if num_fake is not None else spec["num_fake"]
        num_real = num_real if num_real is not None else spec["num_real"]
    metrics = tuple(metrics)
    bad = [m for m in metrics if m not in METRICS]
    if bad or not metrics:
        raise EvaluationError(f"unknown metric(s) {bad or list(metrics)}; choose from {', '.join(METRICS)}")
    for label, value in (("num", num), ("num_fake", num_fake), ("num_real", num_real)):
        if value is not None and value < 2:
            raise EvaluationError(f"{label} must be >= 2 (FID needs a covariance); got {value}")
    real_path = resolve_data(real, data_root)
    real_set = ImageDataset(real_path)
    num_real = num_real if num_real is not None else num
    if num_real is not None and num_real < len(real_set):  # a seeded draw, not the first N in source order
        chosen = torch.randperm(len(real_set), generator=torch.Generator().manual_seed(seed))[:num_real]
        real_set = torch.utils.data.Subset(real_set, sorted(chosen.tolist()))
    n_real = len(real_set)
    fake_input, n_fake = _fake_input(fake, num_fake or num, n_real, trust_pickle, seed, device)
    _check_weights(weights)

    kwargs = dict(
        input1=fake_input, input2=real_set, cuda=device == "cuda", batch_size=batch_size,
        fid="fid" in metrics, kid="kid" in metrics, prc=bool({"precision", "recall"} & set(metrics)),
        feature_extractor=feature_extractor, feature_extractor_weights_path=None if weights is None else str(weights),
        cache=False, verbose=verbose, rng_seed=seed, save_cpu_ram=True,
    )
    cache_root = data_root_of(data_root) / "fidelity-cache"
    if cache:
        kwargs.update(cache=True, cache_root=str(cache_root),
                      input2_cache_name=real_cache_name(real_path, feature_extractor, n_real, seed, num_real is not None))
    if "kid" in metrics:
        kwargs["kid_subset_size"] = min(1000, n_real, n_fake)
    if isinstance(fake_input, torch.nn.Module):
        kwargs["input1_model_num_samples"] = n_fake
    try:
        raw = _calculate(kwargs, cache_root)
    except OSError as err:  # urllib's URLError is an OSError: no cached weights and no internet
        raise EvaluationError(_weights_help(f"downloading the InceptionV3 weights failed ({err})")) from err
    out = {}
    if "fid" in metrics:
        out["fid"] = raw["frechet_inception_distance"]
    if "kid" in metrics:
        out["kid"], out["kid_std"] = raw["kernel_inception_distance_mean"], raw["kernel_inception_distance_std"]
    for m in ("precision", "recall"):
        if m in metrics:
            out[m] = raw[m]
    return {**out, "num_real": n_real, "num_fake": n_fake, "feature_extractor": feature_extractor,
            **({"protocol": protocol} if protocol is not None else {})}


def real_cache_name(path: pathlib.Path, feature_extractor: str, count: int, seed: int, subset: bool) -> str:
    """The cache key of a real set's features: its content, the extractor, the sample count and the subset's seed.

    Content is read cheaply and exactly enough: for a zip, every member's name, size and CRC-32
    (stored in the zip's directory); for a folder, every image's relative path, size and
    modification time. Any change of the data, the extractor or the count gives another key.
    """
    digest = hashlib.sha256()
    if path.is_file():
        with zipfile.ZipFile(path) as z:
            for info in sorted(z.infolist(), key=lambda i: i.filename):
                digest.update(f"{info.filename}:{info.file_size}:{info.CRC}\n".encode())
    else:
        for name in ImageDataset(path).files.names:
            stat = (path / name).stat()
            digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    digest.update(f"{feature_extractor}:{count}:{seed if subset else 'all'}".encode())
    return f"real-{digest.hexdigest()[:32]}"


def _calculate(kwargs: dict, cache_root: pathlib.Path) -> dict:
    """torch-fidelity's metrics; a cached real set that fails to load (truncated, damaged) is rebuilt, not trusted."""
    try:
        return torch_fidelity.calculate_metrics(**kwargs)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile):
        stale = sorted(cache_root.glob(f"{kwargs.get('input2_cache_name', '')}*")) if kwargs.get("cache") else []
        if not stale:
            raise
        for path in stale:  # only this real set's cache files
            path.unlink()
        return torch_fidelity.calculate_metrics(**kwargs)


def _weights_help(reason: str) -> str:
    return (f"{reason}. On a machine with internet, download "
            f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE} and either copy it to "
            f"{str(inception_weights_cache())!r} or pass its path with --weights PATH (Python: weights=PATH)")


def _check_weights(weights) -> None:
    """A weights file must be a plain state dict: torch-fidelity loads it with full unpickling."""
    if weights is None:
        return
    try:
        state = load_checkpoint(weights)
    except CheckpointError as err:
        raise EvaluationError(f"--weights: {err}") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EvaluationError(f"weights file {str(weights)!r} is not a state dict of tensors")


def _fake_input(fake, num: int | None, n_real: int, trust_pickle: bool, seed: int, device: str):
    """A Dataset of generated images (``num`` of them, default all), or a generator (``num``, default ``n_real``), and the count."""
    path = pathlib.Path(fake).expanduser()
    if not path.exists():
        raise EvaluationError(f"--fake {str(fake)!r} does not exist; pass a folder/zip of images or a generator file")
    if path.is_file() and path.suffix in GENERATOR_SUFFIXES:
        return GeneratorSamples(_load_generator(path, trust_pickle), seed).to(device), num or n_real
    try:
        images = ImageDataset(path)
    except DatasetError as err:
        raise EvaluationError(str(err)) from err
    if num is not None and len(images) > num:
        images = torch.utils.data.Subset(images, range(num))
    return images, len(images)


def _load_generator(path: pathlib.Path, trust_pickle: bool) -> torch.nn.Module:
    try:
        obj = load_checkpoint(path, trust_pickle=trust_pickle)
    except CheckpointError as err:
        raise EvaluationError(f"generator: {err}") from err
    except ModuleNotFoundError as err:
        raise EvaluationError(f"the generator in {str(path)!r} needs module {err.name!r}; put the code that defined it "
                              f"(e.g. your stylegan2-ada-pytorch checkout) on PYTHONPATH") from err
    if isinstance(obj, dict):
        obj = obj.get("G_ema", obj.get("G"))
    if not isinstance(obj, torch.nn.Module) or not isinstance(getattr(obj, "z_dim", None), int):
        raise EvaluationError(f"{str(path)!r} holds no generator: expected an nn.Module with an int z_dim, or a dict "
                              f"with one under 'G_ema' or 'G'")
    return obj.eval().requires_grad_(False)


class GeneratorSamples(GenerativeModelBase):
    """A generator as torch-fidelity's input: ``z -> uint8 images``; draws its own classes if conditional.

    torch-fidelity would draw class labels itself with ``np.int``, which numpy >= 1.24 removed, so
    the wrapper reports ``num_classes = 0`` and draws one-hot ``c`` from its own seeded generator.
    """

    def __init__(self, G: torch.nn.Module, seed: int = 0):
        super().__init__()
        self.G = G
        self.c_dim = int(getattr(G, "c_dim", 0) or 0)
        self.conditional = hasattr(G, "c_dim")
        self.rng = torch.Generator().manual_seed(seed)

    @property
    def z_size(self) -> int:
        return self.G.z_dim

    @property
    def z_type(self) -> str:
        return "normal"

    @property
    def num_classes(self) -> int:
        return 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.conditional:
            c = torch.zeros(z.shape[0], self.c_dim, device=z.device)
            if self.c_dim:
                c[torch.arange(z.shape[0]), torch.randint(self.c_dim, (z.shape[0],), generator=self.rng).to(z.device)] = 1
            images = self.G(z, c)
        else:
            images = self.G(z)
        return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)
