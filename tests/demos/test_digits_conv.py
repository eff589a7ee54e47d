"""The conv digits job (`run digits --net conv`): networks, the new methods, a short run end to end."""
import json

import pytest
import torch
from click.testing import CliRunner

from diffaug_noise.cli.main import main
from diffaug_noise.demos.digits import DigitsSettings, train_digits
from diffaug_noise.demos.digits.conv import (
    ConvDiscriminator,
    ConvGenerator,
    conv_discriminator,
    conv_generator,
    to_digit_pixels,
    upsample,
)
from diffaug_noise.demos.digits.train import METHODS, NET_DEFAULTS


@pytest.fixture(autouse=True)
def _data_root_env(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DIFFAUG_NOISE_DATA", str(tmp_path_factory.getbasetemp() / "digits-conv-data"))


@pytest.mark.parametrize("resolution", [16, 32])
@pytest.mark.parametrize("conditioning", ["projection", "film", "none"])
def test_the_networks_shapes_and_their_use_of_t(resolution, conditioning):
    G = conv_generator([0, 1, 2], z_dim=8, resolution=resolution, width=4)
    D = conv_discriminator([5, 6, 7], resolution=resolution, width=4, conditioning=conditioning)
    images = G(torch.randn(3, 10, 8))
    assert images.shape == (3, 10, 1, resolution, resolution) and images.abs().max() <= 1
    t = torch.randint(0, 1000, (3, 10))
    logits = D(images, t)
    assert logits.shape == (3, 10, 1)
    if conditioning == "film":  # AdaGN starts as GroupNorm: train its modulation a step so t shows
        D.params["norms__0__modulation__weight"].data.normal_()
    changed = D(images, torch.zeros_like(t))
    assert torch.equal(changed, D(images, t)) == (conditioning == "none")


def test_each_member_is_the_network_its_seed_builds():
    """The ensemble trains independent runs: member k computes what a network from seed k computes alone."""
    torch.manual_seed(0)
    D = conv_discriminator([3, 4], resolution=16, width=4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        alone = ConvDiscriminator(16, 4)
    y, t = torch.randn(2, 5, 1, 16, 16), torch.randint(0, 100, (2, 5))
    torch.testing.assert_close(D(y, t)[1], alone(y[1], t[1]))
    G = conv_generator([9, 9], z_dim=4, resolution=16, width=4)
    z = torch.randn(1, 6, 4).expand(2, -1, -1)
    assert torch.equal(G(z)[0], G(z)[1])  # one seed, one network
    assert isinstance(ConvGenerator(4, 16, 4)(torch.randn(2, 4)), torch.Tensor)


def test_the_pixels_go_up_to_the_job_and_back_to_the_classifiers_grid():
    digits = torch.rand(4, 1, 8, 8) * 2 - 1
    up = upsample(digits, 16)
    assert up.shape == (4, 1, 16, 16)
    back = to_digit_pixels(up.unsqueeze(0))
    assert back.shape == (1, 4, 64)
    torch.testing.assert_close(back.view(4, 1, 8, 8), digits, atol=1e-5, rtol=0)  # the exact inverse
    with pytest.raises(ValueError, match=r"resolution must be one of \(16, 32\); got 24"):
        ConvGenerator(4, 24, 4)


def test_the_networks_defaults_and_one_line_refusals():
    mlp, conv = DigitsSettings(), DigitsSettings(net="conv")
    assert (mlp.iterations, mlp.sigma, mlp.instance_sigma, mlp.target, mlp.methods) == \
        (4000, 0.5, 0.7, 0.3, ("plain", "instance", "diffusion"))  # docs/digits.md's first study, unchanged
    for name, (mlp_default, conv_default) in NET_DEFAULTS.items():
        assert getattr(mlp, name) == mlp_default and getattr(conv, name) == conv_default, name
    assert DigitsSettings(net="conv", sigma=0.9).sigma == 0.9
    with pytest.raises(ValueError, match="conditioning 'none' is for --net conv"):
        DigitsSettings(conditioning="none")
    result = CliRunner().invoke(main, ["run", "digits", "--net", "conv", "--resolution", "24"])
    assert result.exit_code == 2 and "'24' is not one of" in result.output
    help_text = CliRunner().invoke(main, ["run", "digits", "--help"]).output
    assert "[default: mlp 0.5; conv" in " ".join(help_text.split())


def test_every_method_trains_end_to_end_and_diffaugment_changes_what_d_sees(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["run", "digits", "--net", "conv", "--width", "4", "--iterations", "6",
                                       "--eval-every", "3", "--eval-samples", "50", "--seeds", "1", "--methods",
                                       ",".join(METHODS), "--outdir", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    runs = {r["method"]: r for r in metrics["runs"]}
    assert set(runs) == set(METHODS) and metrics["config"]["net"] == "conv"
    assert set(metrics["history"]["T"]) == {f"{m}/seed0" for m in ("diffusion", "diffusion-fixed",
                                                                      "diffaugment+diffusion")}
    for method in ("plain", "instance", "diffaugment"):
        assert runs[method]["final_T"] is None
    assert all(r["score"] > 0 for r in runs.values())
    # one seed: plain and diffaugment start from the same G, D and data; what D saw differs, so do the results
    assert metrics["history"]["score"]["plain/seed0"] != metrics["history"]["score"]["diffaugment/seed0"]
    resumed = CliRunner().invoke(main, ["run", "digits", "--net", "conv", "--width", "4", "--iterations", "6",
                                        "--eval-every", "3", "--eval-samples", "50", "--seeds", "1", "--methods",
                                        ",".join(METHODS), "--outdir", str(out), "--resume"])
    def results(runs):  # of a finished run --resume changes nothing but the clock
        return [{k: v for k, v in r.items() if k != "seconds"} for r in runs]
    assert resumed.exit_code == 0
    assert results(json.loads((out / "metrics.json").read_text())["runs"]) == results(metrics["runs"])


def test_a_conv_run_does_not_depend_on_the_other_methods_beside_it():
    settings = dict(net="conv", width=4, iterations=8, eval_every=4, seeds=(1,), eval_samples=100)
    alone = train_digits(DigitsSettings(methods=("diffaugment+diffusion",), **settings))
    beside = train_digits(DigitsSettings(methods=("plain", "diffaugment+diffusion"), **settings))
    name = "diffaugment+diffusion/seed1"
    torch.testing.assert_close(alone["history"]["score"][name], beside["history"]["score"][name], rtol=1e-3, atol=0)
    assert alone["history"]["T"][name] == beside["history"]["T"][name]
