"""The R3GAN adapter against stand-ins of brownvc/R3GAN's modules (tests/standins/r3gan/README.md)."""
import pickle
import sys

import pytest
import torch

import diffaug_noise as dn
from diffaug_noise.integrations import ADAPTERS, r3gan
from helpers import STANDINS, forget_upstream, run_dirs, stats_of, train_standin

STANDIN = STANDINS / "r3gan"
UPSTREAM_MODULES = ("train", "training", "torch_utils", "dnnlib", "legacy", "R3GAN", "pkg_resources")


@pytest.fixture
def recorded(noise_calls):
    forget_upstream(STANDIN, UPSTREAM_MODULES)
    yield noise_calls
    forget_upstream(STANDIN, UPSTREAM_MODULES)


def train(out, *extra, **options):
    return train_standin(ADAPTERS["r3gan"], STANDIN, ["--outdir", str(out), "--data", "unused", "--gpus", "1",
                                                      "--batch", "4", "--preset", "CIFAR10", *extra], **options)


stats = stats_of


@pytest.fixture
def calls(monkeypatch):
    """Every D call of the adapter's loss: (augmented input, t, logits), and every applied transform (x, t)."""
    seen = {"D": [], "transform": []}
    D_call = r3gan.DiffusionR3GANLoss.discriminate
    apply = dn.DiffusionNoise.apply_transform

    def discriminate(self, y, c):
        logits = D_call(self, y, c)
        seen["D"].append((y.detach().clone(), self._next[0].clone(), logits.detach().clone(), self._next[1]))
        return logits

    def transform(self, x, t, eps, **kwargs):
        seen["transform"].append((x.detach().clone(), t.clone()))
        return apply(self, x, t, eps, **kwargs)
    monkeypatch.setattr(r3gan.DiffusionR3GANLoss, "discriminate", discriminate)
    monkeypatch.setattr(dn.DiffusionNoise, "apply_transform", transform)
    return seen


def test_the_noise_is_the_preprocessor_after_augmentation_and_pairs_share_t(tmp_path, recorded, calls, monkeypatch):
    sys.path.insert(0, str(STANDIN))
    import importlib

    augment = importlib.import_module("training.augment")
    augmented = []
    pipe_forward = augment.AugmentPipe.forward
    monkeypatch.setattr(augment.AugmentPipe, "forward",
                        lambda self, x: augmented.append(pipe_forward(self, x)) or augmented[-1])
    D, loss, reports = train(tmp_path, "--kimg", "0.016")
    assert len(calls["D"]) == len(calls["transform"]) == len(augmented) == 4 * 2 * 2  # 4 steps, D and G phases, pairs
    for (x, _), a in zip(calls["transform"], augmented):
        assert torch.equal(x, a.detach())  # the noise took exactly what R3GAN's augmentation produced
    for (_, t_first, _, _), (_, t_second, _, _) in zip(calls["D"][::2], calls["D"][1::2]):
        assert torch.equal(t_first, t_second)  # the two members of a pair: one t
    assert len({tuple(t.tolist()) for _, t, _, _ in calls["D"][::2]}) > 1  # each pair its own draw
    # D phase: real, fake; G phase: fake, real
    assert [real for *_, real in calls["D"][:4]] == [True, False, False, True]


def test_without_pair_t_each_side_draws_its_own(tmp_path, recorded, calls):
    train(tmp_path, "--kimg", "0.032", pair_t=False)
    pairs = list(zip(calls["D"][::2], calls["D"][1::2]))
    assert any(not torch.equal(a[1], b[1]) for a, b in pairs)


def test_the_relativistic_signal_of_the_d_phases_pairs_drives_the_controller(tmp_path, recorded, calls):
    D, loss, reports = train(tmp_path, "--kimg", "0.032", target=-1.0)
    assert loss.controller.signal == "relativistic" and loss.controller.step == 8
    d_pairs = [(a, b) for a, b in zip(calls["D"][::2], calls["D"][1::2]) if a[3] is True and b[3] is False]
    assert len(d_pairs) == 8
    expected = []
    for k in range(0, 8, 4):  # interval 4: r_d over the pairs of 4 steps
        signs = torch.cat([(real[2] - fake[2]).sign() for real, fake in d_pairs[k:k + 4]])
        expected.append(float(signs.double().mean()))
    assert reports["Diffusion/r_d"][::4] == pytest.approx(expected)  # from the first adjustment (4th step) on
    assert loss.noise.p == pytest.approx(loss.controller.step_size * sum(r > -1 for r in expected))
    assert loss.controller.target == -1.0


def test_the_default_target_is_the_papers_translated_to_pairs():
    options = r3gan.R3GANSettings()
    assert options.controller_kwargs()["target"] == pytest.approx(dn.relativistic_target(0.6))
    assert ADAPTERS["r3gan"].controller_kwargs(options)["signal"] == "relativistic"
    assert r3gan.R3GANSettings(target=0.5).controller_kwargs()["target"] == 0.5


def test_r1_and_r2_are_taken_w_r_t_the_clean_samples_through_the_noise(tmp_path, recorded, monkeypatch):
    """Upstream differentiates D's logits w.r.t. the samples it was given: the noise sits between, so R1/R2 see it."""
    leaves = []
    apply = dn.DiffusionNoise.apply_transform

    def transform(self, x, t, eps, **kwargs):
        leaves.append((x.is_leaf, x.requires_grad))
        return apply(self, x, t, eps, **kwargs)
    monkeypatch.setattr(dn.DiffusionNoise, "apply_transform", transform)
    D, loss, reports = train(tmp_path, "--kimg", "0.008", "--aug", "false")
    # D phase: the real and the fake reach the noise as the leaves R1 and R2 are taken against (clean, requiring grad);
    # G phase: G's output (gradients flow to G through the noise) and the real as data
    assert leaves[:4] == [(True, True), (True, True), (False, True), (True, False)]
    assert reports["Loss/r1_penalty"][0] > 0 and reports["Loss/r2_penalty"][0] > 0


def test_conditional_runs_keep_their_labels_and_add_t(tmp_path, recorded):
    D, loss, _ = train(tmp_path, "--kimg", "0.008", "--cond", "true")
    assert D.D.embedding.in_features == 3 + 32  # R3GAN's condition embedding sees [c, e(t)]
    D, loss, _ = train(tmp_path / "u", "--kimg", "0.008")
    assert D.D.embedding.in_features == 32 and D.D.embedding.out_features == 8  # unconditional: t's embedding added


def test_snapshot_loads_with_upstreams_loader_and_resume_goes_on(tmp_path, recorded):
    common = ["--tick", "0.004"]
    whole = train(tmp_path / "whole", *common, "--kimg", "0.064", target=-1.0)
    part = train(tmp_path / "part", *common, "--kimg", "0.032", target=-1.0)
    (part_run,) = run_dirs(tmp_path / "part")
    snapshot = sorted(part_run.glob("network-snapshot-*.pkl"))[-1]
    import legacy

    with open(snapshot, "rb") as f:
        data = legacy.load_network_pkl(f)
    assert data["cur_nimg"] == 32 and int(data["D"].images_seen) == 32 and data["D"].noise.p == part[0].noise.p
    assert data["G_ema"](torch.randn(2, 4), torch.zeros(2, 0)).shape == (2, 3, 8, 8)  # what gen_images.py calls
    rest = train(tmp_path / "rest", *common, "--kimg", "0.064", "--resume", str(snapshot), target=-1.0)
    (whole_run,), (rest_run,) = run_dirs(tmp_path / "whole"), run_dirs(tmp_path / "rest")
    keys = ("Progress/tick", "Progress/kimg", "Progress/augment", "Progress/gamma")
    ticks = lambda run: [[s[k]["mean"] for k in keys] for s in stats(run)]  # noqa: E731
    assert ticks(rest_run) == ticks(whole_run)[-len(ticks(rest_run)):] and ticks(rest_run)[0][0] == 8
    assert (rest[0].noise.p, rest[0].noise.T) == (whole[0].noise.p, whole[0].noise.T) and whole[0].noise.p > 0
    assert rest[1].controller.step == whole[1].controller.step == 16 and int(rest[0].images_seen) == 64


def test_upstream_needs_the_pkg_resources_and_float_betas_shims(tmp_path, recorded, monkeypatch):
    import importlib.util

    if importlib.util.find_spec("pkg_resources") is None:  # current setuptools: upstream does not even import
        with pytest.raises(Exception, match="No module named 'pkg_resources'"):
            with ADAPTERS["r3gan"].patched(STANDIN, shims=False):
                pass
        forget_upstream(STANDIN, UPSTREAM_MODULES)
    monkeypatch.setattr(r3gan, "float_adam_betas_patch", lambda loop: [])  # every shim but the betas one
    with pytest.raises(ValueError, match="betas must be either both floats or both Tensors"):
        train(tmp_path)


def test_cli_runs_r3gan_and_its_help_says_what_is_noised(tmp_path, recorded):
    from click.testing import CliRunner

    from diffaug_noise.cli.main import main

    data = tmp_path / "data"
    data.mkdir()
    help_text = CliRunner().invoke(main, ["run", "r3gan", "--help"]).output
    assert "Preprocessor after its augmentation" in help_text and "--pair-t / --no-pair-t" in help_text
    ok = CliRunner().invoke(main, ["run", "r3gan", "--repo", str(STANDIN), "--data", str(data), "--outdir",
                                   str(tmp_path / "o"), "--", "--preset", "CIFAR10", "--batch", "4"])
    assert ok.exit_code == 0, ok.output
    (run,) = run_dirs(tmp_path / "o")
    with open(sorted(run.glob("*.pkl"))[-1], "rb") as f:
        D = pickle.load(f)["D"]
    assert type(D).__name__ == "DiffusionDiscriminator" and D.noise.config() == dn.DiffusionNoise().config()
