r"""FID, KID, precision and recall of generated images against a dataset, through torch-fidelity.

- FID (Heusel et al. 2017): :math:`\|\mu_r-\mu_g\|^2 + \mathrm{tr}(\Sigma_r+\Sigma_g-2(\Sigma_r\Sigma_g)^{1/2})`
  of InceptionV3 pool features.
- KID (Bińkowski et al. 2018): unbiased MMD² with a cubic polynomial kernel, mean (and std) over subsets.
- Precision and recall (Kynkäänniemi et al. 2019): the share of generated samples inside the real
  features' k-NN balls (k = 3), and vice versa. Recall is what the paper reports beside FID.

Inputs: ``real`` is a registered dataset name or a path (zip or folder, see
:mod:`diffaug_noise.data`); ``fake`` is a folder/zip of images or a generator file. A generator file
is a pickle (``trust_pickle=True`` needed: unpickling runs code) holding an ``nn.Module`` or a
StyleGAN2-ADA-style snapshot dict (``G_ema`` is used), or the generator itself (an ``nn.Module``); it is
called as ``G(z, c)`` when it has a ``c_dim`` attribute (random one-hot classes) and ``G(z)`` otherwise,
with ``z ~ N(0, I)`` of size ``G.z_dim``, and must return images in [-1, 1]. An upstream snapshot needs
its checkout and the shims its run used: ``diffaug-noise eval --repo`` applies them, and from Python
``diffaug_noise.integrations.load_snapshot(path, repo=...)["G_ema"]`` is the generator to pass.

Offline machines: the InceptionV3 weights (``weights-inception-2015-12-05-6726825d.pth``, 91 MB)
come from torch-fidelity's GitHub release into torch's hub cache on first use. Copy the file into
``<torch hub dir>/checkpoints/`` (see :func:`inception_weights_cache`) or pass ``weights=PATH``.

Nothing read from a file runs code (a shared data root may hold anything). torch-fidelity's own
cache unpickles its files (``torch.load(weights_only=False)``), so it is never used: the real set's
features are cached here as ``.npz`` under ``<data root>/fidelity-cache/``, read with pickling
refused and checked before use (:mod:`.feature_cache`), and the InceptionV3 weights (``weights=``
or torch's hub cache) are read with ``weights_only=True`` and handed to torch-fidelity as a
private copy. torch-fidelity's other built-in extractors (``vgg16``, ``clip-*``, ``dinov2-*``)
unpickle their weights or load TorchScript, so they need ``trust_pickle=True``. A generated image
that cannot be read stops the evaluation, naming the file.

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
    >>> register_feature_extractor("doc-means", Means)
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> rng = np.random.default_rng(0)
    >>> for i in range(40):
    ...     PIL.Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    >>> result = evaluate(folder, folder, metrics=("fid",), feature_extractor="doc-means")
    >>> abs(result["fid"]) < 1e-3
    True
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import pathlib
import tempfile
import urllib.error
import warnings
import zipfile
from typing import Callable

import torch

from ..extras import require
from ..registry import Registry

torch_fidelity = require("torch_fidelity", "eval")
from torch_fidelity import metric_fid, metric_kid, metric_prc  # noqa: E402
from torch_fidelity import utils as fidelity_utils  # noqa: E402
from torch_fidelity.generative_model_base import GenerativeModelBase  # noqa: E402
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY  # noqa: E402

from ..checkpoint import CheckpointError, StorageError, load_checkpoint, storage_error  # noqa: E402
from ..data import prepare  # noqa: E402
from ..data.datasets import DATASETS, resolve_data  # noqa: E402
from ..data.datasets import data_root as data_root_of  # noqa: E402
from ..data.errors import DatasetError  # noqa: E402
from ..data.sources import ImageDataset  # noqa: E402
from ..safe_paths import folder_under  # noqa: E402
from . import digits_extractor  # noqa: E402
from .eval_settings import INCEPTION, INCEPTION_FILE, EvalSettings, EvaluationError  # noqa: E402
from .feature_cache import read_cache, write_cache  # noqa: E402
from .protocols import PROTOCOLS  # noqa: E402

INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
GENERATOR_SUFFIXES = (".pkl", ".pt", ".pth")
_FIDELITY_METRIC = {"fid": "fid", "kid": "kid", "precision": "prc", "recall": "prc"}
MIN_IMAGES = {"fid": 2, "kid": 2, "precision": 4, "recall": 4}  # per side; fewer: LinAlgError, NaN, kthvalue error


def inception_weights_cache() -> pathlib.Path:
    """Where torch-fidelity looks for (and downloads) the InceptionV3 weights."""
    return pathlib.Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


@dataclasses.dataclass(frozen=True)
class FeatureExtractorSpec:
    """A feature extractor :func:`evaluate` can use: its torch-fidelity class and how to build it safely."""

    cls: type  # a torch-fidelity FeatureExtractorBase subclass (it names the feature layer of each metric)
    build: Callable  # (name, features_list, weights, cache_dir, trust_pickle) -> an instance of cls


FEATURE_EXTRACTORS = Registry("feature extractor", EvaluationError)


def _plain(name, features_list, weights=None, cache_dir=None, trust_pickle=False):
    return _spec(name).cls(name, list(features_list))


def register_feature_extractor(name: str, cls: type, build: Callable | None = None) -> None:
    """Make ``name`` a choice of :func:`evaluate` and ``eval --feature-extractor``; a name is registered once.

    ``cls`` is a torch-fidelity ``FeatureExtractorBase`` subclass; ``build(name, features_list,
    weights=None, cache_dir=None, trust_pickle=False)`` makes one (default: ``cls(name,
    features_list)``). ``cache_dir`` is the data root, the one place it may cache what it needs.
    """
    FEATURE_EXTRACTORS.register(name, FeatureExtractorSpec(cls, build or _plain))


def _inception(name, features_list, weights=None, cache_dir=None, trust_pickle=False):
    """torch-fidelity's InceptionV3 from weights read with ``weights_only=True`` (handed over as a private copy)."""
    path = pathlib.Path(weights).expanduser() if weights is not None else _downloaded_inception_weights()
    state = _safe_state_dict(path, "--weights" if weights is not None else "the InceptionV3 weights")
    with tempfile.TemporaryDirectory(prefix="diffaug-noise-weights-") as private:  # 0700: only this user reads it
        copy = pathlib.Path(private) / INCEPTION_FILE
        torch.save(state, copy)
        return FEATURE_EXTRACTORS_REGISTRY[INCEPTION](name, list(features_list),
                                                      feature_extractor_weights_path=str(copy))


def _downloaded_inception_weights() -> pathlib.Path:
    path = inception_weights_cache()
    if path.is_file():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(INCEPTION_URL, str(path), progress=False)
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
        raise EvaluationError(_weights_help(f"downloading the InceptionV3 weights failed ({err})")) from err
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT):
            raise storage_error(err, path) from None
        raise EvaluationError(_weights_help(f"downloading the InceptionV3 weights failed ({err})")) from err
    return path


def _safe_state_dict(path: pathlib.Path, what: str) -> dict:
    """A state dict of tensors read with ``weights_only=True`` (nothing in the file can run code)."""
    try:
        state = load_checkpoint(path)
    except CheckpointError as err:
        raise EvaluationError(f"{what}: {err}") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EvaluationError(f"{what}: {str(path)!r} is not a state dict of tensors")
    return state


def _unpickling(name, features_list, weights=None, cache_dir=None, trust_pickle=False):
    """torch-fidelity's other built-in extractors unpickle their weights (or load TorchScript): trusted only."""
    if not trust_pickle:
        raise EvaluationError(f"feature extractor {name!r} loads its weights by unpickling (which runs code named in "
                              "the file); pass --trust-pickle (Python: trust_pickle=True) if you trust your torch hub "
                              f"cache, or use {INCEPTION!r}")
    kwargs = {} if weights is None else {"feature_extractor_weights_path": str(weights)}
    return FEATURE_EXTRACTORS_REGISTRY[name](name, list(features_list), **kwargs)


register_feature_extractor(INCEPTION, FEATURE_EXTRACTORS_REGISTRY[INCEPTION], _inception)
for _name, _cls in list(FEATURE_EXTRACTORS_REGISTRY.items()):
    if _name != INCEPTION:
        register_feature_extractor(_name, _cls, _unpickling)
register_feature_extractor(digits_extractor.NAME, digits_extractor.DigitsFeatureExtractor, digits_extractor.build)


def _spec(name: str) -> FeatureExtractorSpec:
    """The extractor ``name``: registered here, or in torch-fidelity by the caller's own code."""
    if name in FEATURE_EXTRACTORS:
        return FEATURE_EXTRACTORS[name]
    if name in FEATURE_EXTRACTORS_REGISTRY:
        return FeatureExtractorSpec(FEATURE_EXTRACTORS_REGISTRY[name], _plain)
    raise EvaluationError(f"unknown feature extractor {name!r}; choose one of {', '.join(sorted(FEATURE_EXTRACTORS))} "
                          f"(or register one with diffaug_noise.metrics.evaluation.register_feature_extractor)")


def evaluate(
    real,  # EvalInputs.real
    fake,  # EvalInputs.fake, or a generator (nn.Module)
    # called after each batch of feature extraction: (side "generated" or "real", images done, images on that side)
    progress: Callable[[str, int, int], None] | None = None,
    verbose: bool = False,  # torch-fidelity's own progress output
    **settings,  # EvalSettings: metrics, protocol, num, num_fake, num_real, data_root, ... (one per CLI flag)
) -> dict:
    """Compute ``metrics`` of ``fake`` against ``real`` (:class:`EvalSettings`); returns ``{metric: value, ...}``
    plus counts."""
    known = {f.name for f in dataclasses.fields(EvalSettings)}
    if set(settings) - known:
        raise EvaluationError(f"unknown eval setting(s) {sorted(set(settings) - known)}; known: "
                              f"{', '.join(sorted(known))}")
    o = EvalSettings(**{**settings, "metrics": tuple(settings.get("metrics", ("fid",)))})
    metrics, protocol, num, num_fake, num_real = o.metrics, o.protocol, o.num, o.num_fake, o.num_real
    data_root, weights, feature_extractor, batch_size = o.data_root, o.weights, o.feature_extractor, o.batch_size
    device, trust_pickle, seed, cache = o.device, o.trust_pickle, o.seed, o.cache
    if protocol is not None:
        spec = PROTOCOLS[protocol]
        metrics = spec["metrics"]
        num_fake = num_fake if num_fake is not None else spec["num_fake"]
        num_real = num_real if num_real is not None else spec["num_real"]
    metrics = tuple(metrics)
    spec = _spec(feature_extractor)
    root = data_root_of(data_root)
    real_path = _real_path(real, data_root)
    real_set = ImageDataset(real_path)
    num_real = num_real if num_real is not None else num
    if num_real is not None and num_real < len(real_set):  # a seeded draw, not the first N in source order
        chosen = torch.randperm(len(real_set), generator=torch.Generator().manual_seed(seed))[:num_real]
        real_set = torch.utils.data.Subset(real_set, sorted(chosen.tolist()))
    n_real = len(real_set)
    fake_input, n_fake = _fake_input(fake, num_fake or num, n_real, trust_pickle, seed, device)
    needed = max(MIN_IMAGES[m] for m in metrics)
    for which, given, count in (("real", real, n_real), ("fake", fake, n_fake)):
        if count < needed:
            raise EvaluationError(f"--{which} {str(given)!r} gives {count} image(s); {', '.join(metrics)} need at "
                                  f"least {needed} on each side (FID and KID: 2, for a covariance and pairs; precision "
                                  "and recall: 4, a sample and its 3 nearest neighbours)")

    layers = {m: spec.cls.get_default_feature_layer_for_metric(m) for m in {_FIDELITY_METRIC[m] for m in metrics}}
    extractor = spec.build(feature_extractor, sorted(set(layers.values())), weights=weights, cache_dir=root,
                           trust_pickle=trust_pickle).eval().requires_grad_(False)
    if device == "cuda":
        extractor = extractor.cuda()
    side = {"name": "generated", "done": 0, "total": n_fake}  # what the extractor is reading now
    if progress is not None:
        def count(module, inputs, output):
            side["done"] += inputs[0].shape[0]
            progress(side["name"], min(side["done"], side["total"]), side["total"])
        extractor.register_forward_hook(count)
    cuda = device == "cuda"
    features = dict(batch_size=batch_size, cuda=cuda, verbose=verbose)
    if isinstance(fake_input, torch.nn.Module):
        fake_features = fidelity_utils.get_featuresdict_from_generative_model(fake_input, extractor, n_fake,
                                                                              rng_seed=seed, **features)
    else:
        fake_features = fidelity_utils.get_featuresdict_from_dataset(fake_input, extractor, save_cpu_ram=True,
                                                                     **features)
    _check_finite(fake_features, layers, feature_extractor, "fake")
    folder = _cache_folder(root) if cache else None
    cache_file = None
    if folder is not None:
        key = real_cache_name(real_path, feature_extractor, n_real, seed, num_real is not None)
        cache_file = folder / f"{key}-{'-'.join(sorted(set(layers.values())))}.npz"
    shapes = {layer: (n_real, *fake_features[layer].shape[1:]) for layer in set(layers.values())}
    side.update(name="real", done=0, total=n_real)
    real_features = read_cache(cache_file, shapes, lambda rows: fidelity_utils.get_featuresdict_from_dataset(
        torch.utils.data.Subset(real_set, rows), extractor, save_cpu_ram=True, **features))
    if real_features is None:
        real_features = fidelity_utils.get_featuresdict_from_dataset(real_set, extractor, save_cpu_ram=True, **features)
        _check_finite(real_features, layers, feature_extractor, "real")
        write_cache(cache_file, real_features)

    out = {}
    if "fid" in metrics:
        stats_fake = metric_fid.fid_featuresdict_to_statistics(fake_features, layers["fid"])
        stats_real = metric_fid.fid_featuresdict_to_statistics(real_features, layers["fid"])
        out["fid"] = metric_fid.fid_statistics_to_metric(stats_fake, stats_real, verbose)["frechet_inception_distance"]
    if "kid" in metrics:
        raw = metric_kid.kid_featuresdict_to_metric(fake_features, real_features, layers["kid"], rng_seed=seed,
                                                    kid_subset_size=min(1000, n_real, n_fake), verbose=verbose)
        out["kid"], out["kid_std"] = raw["kernel_inception_distance_mean"], raw["kernel_inception_distance_std"]
    if {"precision", "recall"} & set(metrics):
        raw = metric_prc.prc_featuresdict_to_metric(fake_features, real_features, layers["prc"], save_cpu_ram=True,
                                                    verbose=verbose, cuda=cuda)
        out.update({m: raw[m] for m in ("precision", "recall") if m in metrics})
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


def _check_finite(features: dict, layers: dict, extractor: str, side: str) -> None:
    """Refuse NaN or inf features in one line (torch-fidelity would end in ``LinAlgError``)."""
    for layer in set(layers.values()):
        values = features[layer]
        bad = int((~torch.isfinite(values.reshape(values.shape[0], -1))).any(dim=1).sum())
        if bad:
            raise EvaluationError(f"the feature extractor {extractor!r} gave NaN or inf features for {bad} of the "
                                  f"{values.shape[0]} {side} images (layer {layer!r}); check those images (blank, "
                                  "1 pixel, broken?) or the extractor")


def _cache_folder(root: pathlib.Path) -> pathlib.Path | None:
    """``<root>/fidelity-cache``, made if missing; None (with a warning) where it cannot be, or is a planted link."""
    try:
        return folder_under(root, root / "fidelity-cache")
    except OSError as err:  # a read-only root, or a link someone planted: the score is the same, only not cached
        message = str(err) if isinstance(err, StorageError) else str(storage_error(err, root / "fidelity-cache"))
        warnings.warn(f"{message}; the real features are not cached (--no-cache does not try)", stacklevel=3)
        return None


def _real_path(real, data_root) -> pathlib.Path:
    """``real`` as a path; a bundled registered dataset (digits) that is not prepared yet is prepared first."""
    try:
        return resolve_data(real, data_root)
    except DatasetError as err:
        spec = DATASETS.get(real) if isinstance(real, str) else None
        if spec is None or not spec.bundled:
            raise EvaluationError(str(err)) from err
    return pathlib.Path(prepare(real, None, data_root=data_root).path)


def _weights_help(reason: str) -> str:
    return (f"{reason}. On a machine with internet, download {INCEPTION_URL} and either copy it to "
            f"{str(inception_weights_cache())!r} or pass its path with --weights PATH (Python: weights=PATH)")


def _fake_input(fake, num: int | None, n_real: int, trust_pickle: bool, seed: int, device: str):
    """A Dataset of generated images (``num`` of them, default all), or a generator (``num``, default ``n_real``), and
    the count."""
    if isinstance(fake, torch.nn.Module):
        return GeneratorSamples(_generator(fake, "the generator passed as fake"), seed).to(device), num or n_real
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
        raise EvaluationError(f"the generator in {str(path)!r} needs module {err.name!r}: an upstream snapshot loads "
                              f"with its checkout and the shims its run used; pass --repo PATH, the checkout that "
                              f"trained it (Python: diffaug_noise.integrations.load_snapshot(path, repo=PATH)['G_ema'] "
                              f"as fake)") from err
    if isinstance(obj, dict):
        obj = obj.get("G_ema", obj.get("G"))
    return _generator(obj, str(path))


def _generator(obj, where: str) -> torch.nn.Module:
    if not isinstance(obj, torch.nn.Module) or not isinstance(getattr(obj, "z_dim", None), int):
        raise EvaluationError(f"{where!r} holds no generator: expected an nn.Module with an int z_dim, or a dict "
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
                classes = torch.randint(self.c_dim, (z.shape[0],), generator=self.rng).to(z.device)
                c[torch.arange(z.shape[0]), classes] = 1
            images = self.G(z, c)
        else:
            images = self.G(z)
        return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)
