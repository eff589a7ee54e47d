"""Plain GAN vs instance noise vs DiffAugment vs Diffusion-GAN on a few hundred real digits, scored by FD_digits.

Every (method, seed) pair is one member of a batched ensemble (MLPs: :mod:`.networks`; ``net="conv"``:
:mod:`.conv`, the digits upsampled to 16 or 32 px), so all runs train in one pass: for one seed
every method gets the same training images, initial weights, minibatches and latents; only what D
sees differs:

- ``plain``: the clean images, ``t = 0``;
- ``instance``: Gaussian instance noise, ``x + instance_sigma * eps``, ``t = 0`` (the cheap alternative);
- ``diffaugment``: :class:`~diffaug_noise.augment.DiffAugment` (color, translation, cutout) of reals
  and fakes, ``t = 0`` (the standard limited-data defence);
- ``diffusion``: :class:`~diffaug_noise.DiffusionNoise` with ``T`` adapted by
  :class:`~diffaug_noise.AdaptiveController` from D's real logits;
- ``diffusion-fixed``: the same noise with ``T = fixed_T`` and no controller (is adaptation needed?);
- ``diffaugment+diffusion``: the noise after DiffAugment, adapted (does the layer add to it?).

Every ``eval_every`` steps each generator draws ``eval_samples`` digits from fixed latents; they
are quantised to uint8 as an image file would store them and scored with FD_digits against all
1,797 real digits (:mod:`.classifier`). Classes covered: digits that get at least
``coverage_share`` of the classifier's predictions for the final samples.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Callable

import torch
import torch.nn.functional as F

from ...augment import DiffAugment
from ...checkpoint import json_safe, load_training_state, remove_stale_temps, restoring, save_checkpoint
from ...controller import AdaptiveController
from ...data.digits import NUM_CLASSES, load_digits, stratified_subset, to_uint8
from ...knobs import check_knobs, knob
from ...metrics.digits_classifier import load_classifier
from ...metrics.frechet import feature_statistics, frechet_distance
from ...noise import DiffusionNoise
from ...settings import setting
from .. import checkpoint_fields as fields
from ..training import member_inputs, restore_members, summarize
from .conv import CONV_CONDITIONINGS, RESOLUTIONS, conv_discriminator, conv_generator, to_digit_pixels, upsample
from .networks import CONDITIONINGS, EnsembleDiscriminator, EnsembleGenerator

METHODS = ("plain", "instance", "diffaugment", "diffusion", "diffusion-fixed", "diffaugment+diffusion")
DIFFUSION_METHODS = ("diffusion", "diffusion-fixed", "diffaugment+diffusion")
ADAPTIVE_METHODS = ("diffusion", "diffaugment+diffusion")
AUGMENTED_METHODS = ("diffaugment", "diffaugment+diffusion")
NETS = ("mlp", "conv")
# Settings whose default depends on the networks: (MLP, conv). The MLP values are docs/digits.md's first
# study; the conv values its conv study's choices at equal tuning effort.
NET_DEFAULTS = {
    "iterations": (4000, 2000),
    "train_size": (200, 100),  # the conv D memorises 100 digits within 2,000 iterations (docs/digits.md)
    "lr": (2e-4, 5e-4),
    # conv: the six methods take 7.3 min on 2 cores, these four fit the 5 minutes a default run may take
    "methods": (("plain", "instance", "diffusion"), ("plain", "instance", "diffaugment", "diffusion")),
    # the MLP's steps are tiny: one thread is the fastest on an idle machine but for spinning ones, and slows only in
    # proportion to other jobs (docs/performance.md, "Threads on a shared CPU")
    "threads": (1, 2),
    "instance_sigma": (0.7, 0.3),
    "translation": (0.125, 0.0625),  # the MLP value is DiffAugment's own default
    "cutout": (0.5, 0.25),
    "sigma": (0.5, 0.5),
    "target": (0.3, 0.3),
    "kimg": (5.0, 5.0),
    "fixed_T": (200, 50),
    "conditioning": ("projection", "projection"),
}


def _per_net(name: str) -> str:
    mlp, conv = (",".join(v) if isinstance(v, tuple) else v for v in NET_DEFAULTS[name])
    return f"  [default: mlp {mlp}; conv {conv}]"


METRICS = ("score", "best_score", "classes_covered")  # per-run numbers summarised over seeds
# what a checkpoint holds besides the config
STATE_KEYS = ("iteration", "wall_seconds", "G", "D", "opt_g", "opt_d", "data_gens", "noise_gens", "noises",
              "controllers", "history", "sign_sums", "signs_counted", "latest", "samples")


@dataclasses.dataclass
class DigitsSettings:
    """Settings of the digits run; defaults are the ones docs/digits.md reports."""

    net: str = knob("mlp", "The networks: MLPs on the 8x8 pixels, or DCGAN-style convolutional G and D on the digits "
                           "upsampled to --resolution px.", kind=str, choices=NETS)
    iterations: int = knob(None, "Training iterations (one D and one G step each)." + _per_net("iterations"), kind=int,
                           minimum=1)
    seeds: tuple = knob((0, 1, 2), "Seeds (0..N-1); each draws its own training subset and initial weights.",
                        kind="count")
    methods: tuple = knob(None, "Comma-separated subset of plain, instance (Gaussian instance noise), diffaugment "
                                "(color, translation, cutout), diffusion (adaptive T), diffusion-fixed (T = --fixed-T, "
                                "no controller), diffaugment+diffusion." + _per_net("methods"), kind="list",
                          choices=METHODS)
    train_size: int = knob(None, "Training digits per seed, a stratified draw from the 1,797 (the limited-data knob)."
                           + _per_net("train_size"),
                           kind=int, minimum=10, maximum=1797)
    batch_size: int = knob(64, "Real and fake images per step.", kind=int, minimum=1)
    z_dim: int = knob(32, "Latent dimension.", kind=int, minimum=1)
    lr: float = knob(None, "Adam learning rate (G and D)." + _per_net("lr"), kind=float, minimum=0.0,
                     exclusive_minimum=True)
    adam_betas: tuple = (0.5, 0.999)  # Adam betas
    conditioning: str = knob(None, "How D sees t: a projection head, film (AdaGN-style scale and shift of every "
                                   "hidden layer, and the head), or none (conv only: D blind to t, an ablation)."
                             + _per_net("conditioning"), kind=str, choices=CONV_CONDITIONINGS)
    resolution: int = knob(16, "Side of the conv job's images (the 8x8 digits upsampled bilinearly).", kind=int,
                           choices=RESOLUTIONS)
    width: int = knob(16, "Channels of the conv networks at their largest resolution (doubling per halving).",
                      kind=int, minimum=1)
    instance_sigma: float = knob(None, "Std of the Gaussian instance noise of 'instance', in pixel units of [-1, 1] "
                                       "(tuned, docs/digits.md)." + _per_net("instance_sigma"), kind=float,
                                 minimum=0.0, exclusive_minimum=True)
    sigma: float = setting("sigma", None, note="Here in pixel units of [-1, 1] images." + _per_net("sigma"))
    t_dist: str = setting("t_dist")
    clean_prob: float = setting("clean_prob")
    t_min: int = setting("t_min")
    t_max: int = setting("t_max")
    target: float = setting("target", None, note="The paper's 0.6 lets T fall back here (docs/digits.md)."
                            + _per_net("target"))
    interval: int = setting("interval")
    kimg: float = setting("kimg", None, note=_per_net("kimg").strip())
    fixed_T: int = knob(None, "T of the 'diffusion-fixed' method." + _per_net("fixed_T"), kind=int, minimum=1)
    translation: float = knob(None, "DiffAugment's largest shift, as a share of the side." + _per_net("translation"),
                              kind=float, minimum=0.0, maximum=0.5)
    cutout: float = knob(None, "Side of DiffAugment's cut-out square, as a share of the side (0: no cutout)."
                         + _per_net("cutout"), kind=float, minimum=0.0, maximum=1.0)
    warmup: int = knob(0, "Iterations before the controller first adjusts T (until then T stays at --t-min): D beats "
                          "a poor G at the start whatever it memorises.", kind=int, minimum=0)
    signal_on: str = knob("noised", "What the controller's r_d is measured on: the noised reals D trains on (the "
                                    "paper), or the clean reals at t = 0 (one more D forward a step).", kind=str,
                          choices=("noised", "clean"))
    eval_every: int = knob(250, "Iterations between FD_digits evaluations (and one at the end).", kind=int, minimum=1)
    eval_samples: int = knob(2000, "Generated digits per evaluation.", kind=int, minimum=2)
    coverage_share: float = knob(0.05, "A class is covered with this share of the classifier's predictions.",
                                 kind=float, minimum=0.0, maximum=1.0)
    classifier_seed: int = knob(0, "Seed of the FD_digits classifier.", kind=int, minimum=0)
    threads: int = knob(None, "torch CPU threads (recorded; results do not depend on them, docs/performance.md)."
                              + _per_net("threads"), kind=int, minimum=1)
    device: str = knob("cpu", "Where to train; small enough for a laptop CPU.", kind=str, choices=("cpu", "cuda"))
    log_every: int = knob(25, "Resolution of the r_d and T history (iterations).", kind=int, minimum=1)

    def __post_init__(self):
        check_knobs(self)
        for name, defaults in NET_DEFAULTS.items():  # None: the networks' default
            if getattr(self, name) is None:
                setattr(self, name, defaults[NETS.index(self.net)])
        self.methods, self.kimg = tuple(self.methods), float(self.kimg)
        if self.net == "mlp" and self.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning {self.conditioning!r} is for --net conv; the MLP D takes "
                             f"{' or '.join(CONDITIONINGS)}")
        if self.fixed_T > self.t_max:
            raise ValueError(f"fixed_T {self.fixed_T} exceeds t_max {self.t_max}; lower it or raise t_max")


def train_digits(
    config: DigitsSettings,  # what to train
    # called after each step with the latest scores (a progress bar hooks in)
    on_step: Callable[[int, dict], None] | None = None,
    classifier_cache=None,  # folder of the cached FD_digits classifier (default: the data root)
    checkpoint: str | os.PathLike | None = None,  # file to save the whole training state to (atomically)
    checkpoint_every: int = 500,  # steps between checkpoints (and one at the end)
    resume: bool = False,  # continue from `checkpoint` if it exists
    # called after each evaluation with the result so far (what the run returns at its end; plots hook in)
    on_eval: Callable[[dict], None] | None = None,
) -> dict:
    """Train every (method, seed) of ``config``; return per-run metrics, history and final samples.

    With ``checkpoint``, the whole state (networks, optimizers, every generator's RNG state, noise and
    controller states, history, the step) is saved every ``checkpoint_every`` steps and at the end;
    ``resume=True`` continues from it bit-exactly, as if never interrupted (its config must equal
    ``config``, and every field is checked first). Checkpoints load with ``weights_only=True``.
    ``already_complete`` in the result says the checkpoint was the last one (nothing was trained:
    the result is recomputed from it).
    """
    if checkpoint is None and resume:
        raise ValueError("resume=True needs a checkpoint path")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be an int >= 1; got {checkpoint_every!r}")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _train(config, on_step, classifier_cache, checkpoint, checkpoint_every, resume, on_eval)
    finally:
        torch.set_num_threads(previous_threads)


def _make_noise(method: str, config: DigitsSettings, device) -> tuple:
    """The paper's noise and controller with this run's settings (``None``: the paper's), or ``(None, None)``."""
    settings = dict(sigma=config.sigma, t_dist=config.t_dist, clean_prob=config.clean_prob)
    if method in ADAPTIVE_METHODS:
        noise = DiffusionNoise.preset("paper", **settings, t_min=config.t_min, t_max=config.t_max).to(device)
        return noise, AdaptiveController.preset("paper", noise, config.batch_size, target=config.target,
                                                interval=config.interval, kimg=config.kimg)
    if method == "diffusion-fixed":
        return DiffusionNoise.preset("paper", **settings, t_min=config.fixed_T, t_max=config.fixed_T).to(device), None
    return None, None


def _check_saved(saved: dict, config: DigitsSettings, G, D, opt_g, opt_d, generators, noises, history, members) -> None:
    """Every field of a checkpoint against its type, its range and this run; ``ValueError`` naming the first that
    lies (:mod:`~diffaug_noise.demos.checkpoint_fields`)."""
    K, B = len(members), config.batch_size
    iteration = fields.check_count("iteration", saved["iteration"], 1, config.iterations)
    fields.check_number("wall_seconds", saved["wall_seconds"], 0.0)
    fields.check_members(saved, G, D, opt_g, opt_d, generators)
    saved_history = saved["history"]
    fields.check_keys("history", saved_history, history)
    steps = fields.logged_steps(config.log_every, iteration, config.iterations)
    scored = fields.logged_steps(config.eval_every, iteration, config.iterations)
    for key, expected in (("iteration", steps), ("score_iteration", scored)):
        if saved_history[key] != expected:
            raise ValueError(f"history.{key} must list the {len(expected)} steps up to iteration {iteration}; got "
                             f"{saved_history[key]!r:.80}")
    for key in ("T", "r_d", "score"):  # saved with str keys (the member's index)
        fields.check_keys(f"history.{key}", saved_history[key], [str(k) for k in history[key]])
    for k in history["T"]:
        fields.check_series(f"history.T[{k}]", saved_history["T"][str(k)], len(steps), noises[k].t_min,
                            noises[k].t_max, whole=True)
    for k in range(K):
        fields.check_series(f"history.r_d[{k}]", saved_history["r_d"][str(k)], len(steps), -1.0, 1.0, nan=True)
        fields.check_series(f"history.score[{k}]", saved_history["score"][str(k)], len(scored), -math.inf, math.inf)
    since_log = iteration - (steps[-1] if steps else 0)  # the sums are cleared at every logged step
    if saved["signs_counted"] != B * since_log or isinstance(saved["signs_counted"], bool):
        raise ValueError(f"signs_counted must be {B * since_log} (batch {B} x {since_log} steps since the last logged "
                         f"one); got {saved['signs_counted']!r}")
    sums = saved["sign_sums"]
    fields.check_like("sign_sums", sums, torch.zeros(K, dtype=torch.float64))
    if bool((sums.abs() > B * since_log).any()):
        raise ValueError(f"sign_sums must be sums of {B * since_log} signs, within ±{B * since_log}; got "
                         f"{sums.tolist()}")
    names = [f"{m}/seed{s}" for m, s in members]
    latest = {name: saved_history["score"][str(k)][-1] for k, name in enumerate(names)} if scored else {}
    if saved["latest"] != latest:
        raise ValueError(f"latest must be the last scores of the history {latest}; got {saved['latest']!r:.120}")
    fields.check_like("samples", saved["samples"],
                      torch.zeros(K, config.eval_samples, 64, dtype=torch.uint8) if scored else None)


def _train(config: DigitsSettings, on_step, classifier_cache, checkpoint, checkpoint_every, resume, on_eval) -> dict:
    members = [(m, s) for m in config.methods for s in config.seeds]
    K, B = len(members), config.batch_size
    seed_index = torch.tensor([config.seeds.index(s) for _, s in members])
    device = torch.device(config.device)

    images, labels = load_digits()
    pixels = images.flatten(1) if config.net == "mlp" else upsample(images, config.resolution)
    classifier = load_classifier(config.classifier_seed, classifier_cache).to(device)
    real_stats = feature_statistics(classifier.features(to_uint8(images).to(device)))
    train_sets = [pixels[stratified_subset(labels, config.train_size, s)] for s in config.seeds]

    if config.net == "mlp":
        G = EnsembleGenerator([s for _, s in members], config.z_dim, pixels.shape[1]).to(device)
        D = EnsembleDiscriminator([s + 10_000 for _, s in members], config.t_max, config.conditioning,
                                  pixels=pixels.shape[1]).to(device)
    else:
        G = conv_generator([s for _, s in members], config.z_dim, config.resolution, config.width).to(device)
        D = conv_discriminator([s + 10_000 for _, s in members], config.resolution, config.width,
                               config.conditioning).to(device)
    augment = DiffAugment(config.translation, config.cutout)
    opt_g = torch.optim.Adam(G.parameters(), config.lr, betas=config.adam_betas, foreach=True)
    opt_d = torch.optim.Adam(D.parameters(), config.lr, betas=config.adam_betas, foreach=True)
    data_gens = [torch.Generator().manual_seed(s + 20_000) for s in config.seeds]
    noise_gens = [torch.Generator(device).manual_seed(s + 30_000) for _, s in members]
    noises, controllers = zip(*(_make_noise(m, config, device) for m, _ in members))
    eval_z = torch.randn(config.eval_samples, config.z_dim, generator=torch.Generator().manual_seed(40_000))
    eval_z = eval_z.to(device).expand(K, -1, -1)

    def noised(x):
        """What D sees, per member: ``(y [K, N, ...], t [K, N])``."""
        ys, ts = zip(*(member_inputs(x[k], noises[k], config.instance_sigma if m == "instance" else 0.0, noise_gens[k],
                                     augment if m in AUGMENTED_METHODS else None)
                       for k, (m, _) in enumerate(members)))
        return torch.stack(ys), torch.stack(ts)

    @torch.no_grad()
    def evaluate():
        generated = G(eval_z)
        samples = to_uint8(generated if config.net == "mlp" else to_digit_pixels(generated))  # as an image file holds
        features = classifier.features(samples.reshape(K * config.eval_samples, 1, 8, 8))
        scores = [frechet_distance(feature_statistics(f), real_stats)
                  for f in features.view(K, config.eval_samples, -1)]
        return scores, samples

    history = {"iteration": [], "T": {k: [] for k, (m, _) in enumerate(members) if m in DIFFUSION_METHODS},
               "r_d": {k: [] for k in range(K)}, "score_iteration": [], "score": {k: [] for k in range(K)}}
    sign_sums = torch.zeros(K, dtype=torch.float64, device=device)
    signs_counted = 0
    latest, samples = {}, None

    def result_so_far(wall: float) -> dict:  # history and samples as they are now (the names are rebound on resume)
        return _result(config, members, history, samples, classifier, images, wall, first > config.iterations)

    def state(step: int, wall: float) -> dict:
        return {"config": json_safe(dataclasses.asdict(config)), "iteration": step, "wall_seconds": wall,
                "G": G.state_dict(), "D": D.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                "data_gens": [g.get_state() for g in data_gens], "noise_gens": [g.get_state() for g in noise_gens],
                "noises": [None if n is None else n.state_dict() for n in noises],
                "controllers": [None if c is None else c.state_dict() for c in controllers],
                "history": {key: ({str(k): v for k, v in value.items()} if isinstance(value, dict) else value)
                            for key, value in history.items()},
                "sign_sums": sign_sums, "signs_counted": signs_counted, "latest": latest, "samples": samples}

    first, wall_before = 1, 0.0
    if checkpoint is not None:
        remove_stale_temps(checkpoint)  # of a run killed while it wrote; this run owns the folder
    if resume and os.path.exists(checkpoint):
        saved = load_training_state(checkpoint, dataclasses.asdict(config), STATE_KEYS, map_location=device)
        with restoring(checkpoint):
            _check_saved(saved, config, G, D, opt_g, opt_d, data_gens + noise_gens, noises, history, members)
            restore_members(saved, G, D, opt_g, opt_d, data_gens + noise_gens, list(noises) + list(controllers))
            restored = {key: ({int(k): list(v) for k, v in value.items()} if isinstance(value, dict) else list(value))
                        for key, value in saved["history"].items()}
            if set(restored) != set(history) or set(restored["score"]) != set(history["score"]):
                raise KeyError("the history of another run")
            history = restored
            sign_sums = saved["sign_sums"].to(device=device, dtype=torch.float64).view(K).clone()
            signs_counted, latest, samples = int(saved["signs_counted"]), dict(saved["latest"]), saved["samples"]
            first, wall_before = int(saved["iteration"]) + 1, float(saved["wall_seconds"])
        if on_step is not None:
            for step in range(1, first):
                on_step(step, latest)
    start = time.perf_counter()
    for step in range(first, config.iterations + 1):
        per_seed = [(train_sets[i][torch.randint(len(train_sets[i]), (B,), generator=g)],
                     torch.randn(B, config.z_dim, generator=g))
                    for i, g in enumerate(data_gens)]
        real = torch.stack([r for r, _ in per_seed])[seed_index].to(device)
        z = torch.stack([z for _, z in per_seed])[seed_index].to(device)
        fake = G(z)

        y, t = noised(torch.cat([real, fake.detach()], dim=1))
        real_logits, fake_logits = D(y, t).split(B, dim=1)
        loss_d = (F.softplus(-real_logits).mean(dim=(1, 2)) + F.softplus(fake_logits).mean(dim=(1, 2))).sum()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        sign_sums += real_logits.detach().sign().sum(dim=(1, 2), dtype=torch.float64)
        signs_counted += B
        if config.signal_on == "clean" and any(c is not None for c in controllers):
            with torch.no_grad():
                signal_logits = D(real, torch.zeros(real.shape[:2], dtype=torch.int64, device=device))
        else:
            signal_logits = real_logits
        for k, ctrl in enumerate(controllers):
            if ctrl is not None and step > config.warmup:
                ctrl.observe(signal_logits[k])
                ctrl.update()

        D.requires_grad_(False)  # the G step needs gradients through D, not D's own
        loss_g = F.softplus(-D(*noised(fake))).mean(dim=(1, 2)).sum()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        D.requires_grad_(True)

        if step % config.log_every == 0 or step == config.iterations:
            history["iteration"].append(step)
            r_d = (sign_sums / signs_counted).tolist()
            for k in range(K):
                history["r_d"][k].append(r_d[k])
            for k in history["T"]:
                history["T"][k].append(noises[k].T)
            sign_sums.zero_()
            signs_counted = 0
        if step % config.eval_every == 0 or step == config.iterations:
            scores, samples = evaluate()
            history["score_iteration"].append(step)
            for k in range(K):
                history["score"][k].append(scores[k])
            latest = {f"{m}/seed{s}": scores[k] for k, (m, s) in enumerate(members)}
            if on_eval is not None and step < config.iterations:  # the last one is the run's return value
                on_eval(result_so_far(wall_before + time.perf_counter() - start))
        if checkpoint is not None and (step % checkpoint_every == 0 or step == config.iterations):
            save_checkpoint(state(step, wall_before + time.perf_counter() - start), checkpoint)
        if on_step is not None:
            on_step(step, latest)
    return result_so_far(wall_before + time.perf_counter() - start)


def _result(config, members, history, samples, classifier, images, wall, already_complete: bool) -> dict:
    """What a run returns: per-run metrics from the latest evaluation's ``samples``, the history, the samples."""
    K = len(members)
    with torch.no_grad():
        predicted = classifier(samples.reshape(K * config.eval_samples, 1, 8, 8)).argmax(1).view(K, -1)
    runs = []
    for k, (method, seed) in enumerate(members):
        shares = torch.bincount(predicted[k], minlength=NUM_CLASSES).double() / config.eval_samples
        Ts = history["T"].get(k)
        runs.append({
            "method": method,
            "seed": seed,
            "score": history["score"][k][-1],
            "best_score": min(history["score"][k]),
            "classes_covered": int((shares >= config.coverage_share).sum()),
            "class_shares": [round(v, 4) for v in shares.tolist()],
            "final_T": Ts[-1] if Ts else None,
            "max_T": max(Ts) if Ts else None,
            "final_r_d": history["r_d"][k][-1] if history["r_d"][k] else None,  # none logged before an early eval
            "seconds": wall / K,  # this run's share of the one batched pass that trains them all
        })
    name = {k: f"{m}/seed{s}" for k, (m, s) in enumerate(members)}
    return {
        "config": dataclasses.asdict(config),
        "wall_seconds": wall,
        "runs": runs,
        "summary": summarize(runs, config.methods, METRICS),
        "history": {"iteration": list(history["iteration"]), "score_iteration": list(history["score_iteration"]),
                    **{key: {name[k]: list(v) for k, v in history[key].items()} for key in ("T", "r_d", "score")}},
        "samples": {name[k]: samples[k] for k in range(K)},
        "real": to_uint8(images[:100]).flatten(1),
        "already_complete": already_complete,  # resumed from the last checkpoint: nothing was trained
    }
