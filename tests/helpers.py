"""Reference computations and upstream bookkeeping shared by the tests (importable as ``helpers``).

Each reference is computed independently of the library (plain float64 loops, scipy), so tests
compare the implementation against it, never against itself.
"""
import pathlib
import sys

STANDINS = pathlib.Path(__file__).parent / "standins"  # stand-ins of upstream codebases (tests/standins/*/README.md)


def channel_stats_extractor() -> str:
    """The name of a feature extractor for ``evaluate`` (registered once): each image's per-channel means and spreads,
    6 features computed in microseconds, no download."""
    import torch
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase

    from diffaug_noise.metrics import evaluation

    class ChannelStats(FeatureExtractorBase):
        def __init__(self, name, features_list, **kwargs):
            super().__init__(name, features_list)

        @staticmethod
        def get_provided_features_list():
            return ("stats",)

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return "stats"

        @staticmethod
        def can_be_compiled():
            return False

        def forward(self, x):
            x = x.float()
            return (torch.cat([x.mean((2, 3)), x.std((2, 3))], 1),)

    if "test-channel-stats" not in evaluation.FEATURE_EXTRACTORS:
        evaluation.register_feature_extractor("test-channel-stats", ChannelStats)
    return "test-channel-stats"


def noise_images(folder, n, seed, size=8):
    """``n`` PNGs of uniform noise (``size`` px) drawn from ``seed`` in ``folder``; returns it."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder

# Prepended to the real-upstream subprocess scripts: records (r_d, p) at every adjustment in UPDATES, and
# tiny_dataset(out) makes the data both upstreams train on.
UPSTREAM_RUN_PREAMBLE = """
import diffaug_noise as dn

UPDATES = []
_update = dn.AdaptiveController.update

def logged_update(self):
    adjusted = _update(self)
    if adjusted:
        UPDATES.append([self.r_d, self.noise.p])
    return adjusted

dn.AdaptiveController.update = logged_update


def tiny_dataset(out):  # 64 random 32x32 images under out/src, prepared once as the zip upstream reads
    import numpy as np, PIL.Image
    from diffaug_noise.data import prepare

    src = out / "src"
    if not src.exists():
        src.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for i in range(64):
            PIL.Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(src / f"{i}.png")
    return prepare("tiny", src, out=out / "tiny-32x32.zip", resolution=32).path


def small_grid(grid):  # upstream's start-up image grid cut to 2x2 (test-only: it draws up to 1,024 fakes)
    def setup_snapshot_image_grid(training_set, random_seed=0):
        _, images, labels = grid(training_set, random_seed)
        return (2, 2), images[:4], labels[:4]
    return setup_snapshot_image_grid


def run_report(run_dir, D, batch, wall, **extra):  # what every real-upstream run reports, as one JSON line
    import json
    stats = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]
    sec_per_kimg = [s["Timing/sec_per_kimg"]["mean"] for s in stats[1:]] or [float("nan")]
    ticks = [l for l in (run_dir / "log.txt").read_text().splitlines() if l.startswith("tick ")]
    progress = [[s[k]["mean"] for k in ("Progress/tick", "Progress/kimg", "Progress/augment") if k in s] for s in stats]
    print(json.dumps({"p": D.noise.p, "T": D.noise.T, "class": type(D).__name__, "wall_s": wall,
                      "sec_per_iteration": min(sec_per_kimg) * batch / 1000, "progress": progress,
                      "diffusion_p_reported": "Diffusion/p" in stats[-1] and "Diffusion/r_d" in stats[-1],
                      "r_d_means": [s["Diffusion/r_d"]["mean"] for s in stats if "Diffusion/r_d" in s],
                      "images_seen": int(getattr(D, "images_seen", 0)), "tick_lines": ticks, "updates": UPDATES,
                      "options": json.loads((run_dir / "training_options.json").read_text())["D_kwargs"]["class_name"],
                      **extra}))
"""


def abar_reference(betas):
    """abar_0..abar_T by a plain float64 product, independent of the library."""
    out, prod = [1.0], 1.0
    for b in betas:
        prod *= 1.0 - float(b)
        out.append(prod)
    return out


def linear_betas_reference(T, start, end):
    return [start] if T == 1 else [start + (end - start) * i / (T - 1) for i in range(T)]


def fid_reference(a, b):
    """Fréchet distance of two float64 feature arrays [N, F] with scipy's sqrtm (np.cov: unbiased)."""
    import numpy as np
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def forget_upstream(standin, module_roots):
    """Drop stand-in upstream modules from sys.modules and sys.path, so the next test imports afresh."""
    for name in list(sys.modules):
        if name.split(".")[0] in module_roots:
            del sys.modules[name]
    while str(standin) in sys.path:
        sys.path.remove(str(standin))


def chi_square_pvalue(samples, law):
    """p-value of a chi-square test of integer ``samples`` against the probabilities ``law`` (asserts impossible draws
    absent)."""
    import numpy as np
    from scipy import stats

    counts = np.bincount(samples.flatten().numpy(), minlength=len(law))
    assert len(counts) == len(law), "a t above T was drawn"
    law = np.asarray(law)
    assert counts[law == 0].sum() == 0, "a t of probability 0 was drawn"
    keep = law > 0
    expected = law[keep] * counts.sum()
    return stats.chisquare(counts[keep], expected * counts[keep].sum() / expected.sum()).pvalue


def train_standin(adapter, standin, args, **options):
    """Run a stand-in upstream's ``train.main(args)`` under ``adapter``; its (D, loss) and the stats it reported."""
    with adapter.patched(standin, shims=options.pop("shims", True), **options) as upstream:
        upstream.main(list(args), standalone_mode=False)
        D, loss = upstream.RESULTS[-1]
    from torch_utils import training_stats

    return D, loss, {k: list(v) for k, v in training_stats.REPORTS.items()}


def run_dirs(out):
    """The run folders upstream numbered under ``out``, in order."""
    return sorted(p for p in pathlib.Path(out).iterdir() if p.is_dir())


def stats_of(run_dir):
    """A run folder's stats.jsonl records."""
    import json

    return [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines()]
