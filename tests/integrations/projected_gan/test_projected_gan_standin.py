"""Contract tests of the ProjectedGAN adapter against stand-ins of the upstream names it patches.

The stand-ins (tests/standins/projected_gan, mirroring upstream commit e1c246b) keep upstream's
module names, signatures and call order with tiny networks.
"""
import json
import pickle
import sys

import pytest
import torch

from diffaug_noise.integrations import ADAPTERS, UpstreamError, projected_gan
from helpers import STANDINS, forget_upstream

STANDIN = STANDINS / "projected_gan"
UPSTREAM_MODULES = ("train", "training", "torch_utils", "dnnlib", "pg_modules")


@pytest.fixture
def recorded(noise_calls):
    forget_upstream(STANDIN, UPSTREAM_MODULES)
    yield noise_calls
    forget_upstream(STANDIN, UPSTREAM_MODULES)


def train_standin(tmp_path, *extra, shims=True, **options):
    options.setdefault("pretrained", False)
    with ADAPTERS["projectedgan"].patched(STANDIN, shims=shims, **options) as train:
        train.main(["--outdir", str(tmp_path), "--cfg", "stylegan2", "--data", "x", "--gpus", "1", "--batch", "4",
                    *extra],
                   standalone_mode=False)
        return train.RESULTS[-1]


@pytest.mark.parametrize("d_pos", ["first", "last"])
def test_noise_sits_on_the_chosen_feature_maps(tmp_path, recorded, d_pos):
    D, loss = train_standin(tmp_path, "--kimg", "0.008", d_pos=d_pos)
    assert isinstance(D, projected_gan.DiffusionProjectedDiscriminator)
    mini_d_calls = D.D.discriminator.calls
    assert len(recorded["noise"]) == 4 * len(mini_d_calls)  # one draw per feature map per D call
    scratch = D.D.feature_network.scratch
    for i, (features, c) in enumerate(mini_d_calls):
        noised = recorded["noise"][4 * i: 4 * i + 4]
        xs, ys, ts, _ = zip(*noised)
        widths = [x.shape[1] for x in xs]
        assert all(t.shape == x.shape[:2] for x, t in zip(xs, ts))  # the projected_gan preset: t per sample and channel
        if d_pos == "last":
            assert widths == [4, 4, 4, 4]  # after the projections (cout)
            assert all(torch.equal(features[str(k)], ys[k]) for k in range(4))
        else:
            assert widths == [4, 6, 8, 8]  # the backbone's own widths, before the projections
            with torch.no_grad():
                mixed = [getattr(scratch, f"layer{k}_ccm")(ys[k]) for k in range(4)]
                o3 = scratch.layer3_csm(mixed[3])
                o2 = scratch.layer2_csm(o3, mixed[2])
                o1 = scratch.layer1_csm(o2, mixed[1])
                o0 = scratch.layer0_csm(o1, mixed[0])
            for k, expected in enumerate([o0, o1, o2, o3]):
                assert torch.allclose(features[str(k)], expected, atol=1e-6)
        assert c.shape[1] == 0  # the fork never gives t to the discriminators
    assert sys.modules["pg_modules.diffaug"].CALLS  # upstream's DiffAugment still runs first


def test_p_moves_from_real_signs_once_per_iteration_and_survives_pickling(tmp_path, recorded):
    D, loss = train_standin(tmp_path, "--kimg", "0.032", target=-1.0)
    assert len(recorded["observe"]) == 16  # 8 iterations x 2 rounds of reals in Dmain; fakes and G phase unobserved
    step = 4 * 4 / (100 * 1000)
    assert D.noise.p == pytest.approx(2 * step)
    expected_clean = 1 - min(round(64 * D.noise.p), 48) / 64  # the fork's noised share at this p
    assert D.noise.t_distribution()[0].item() == pytest.approx(expected_clean)
    (snapshot,) = tmp_path.glob("*/network-snapshot.pkl")
    with open(snapshot, "rb") as f:
        saved = pickle.load(f)["D"]
    assert saved.noise.p == D.noise.p and saved.noise.T == D.noise.T
    assert torch.equal(saved.noise.t_cdf, D.noise.t_cdf)
    resumed, _ = train_standin(tmp_path / "r", "--kimg", "0.004", "--resume", str(snapshot), target=-1.0)
    assert resumed.noise.p == saved.noise.p and torch.equal(resumed.noise.coefficients64, saved.noise.coefficients64)
    with pytest.raises(UpstreamError, match="--trust-pickle"):
        ADAPTERS["projectedgan"].run(["--outdir", str(tmp_path), "--resume", str(snapshot)], repo=STANDIN)


def test_config_names_our_classes_and_shims_fix_adam_timm_and_cuda(tmp_path, recorded):
    train_standin(tmp_path, "--kimg", "0.004", d_pos="last", sigma=0.25)
    (options_file,) = tmp_path.glob("*/training_options.json")
    options = json.loads(options_file.read_text())
    assert options_file.parent.name == "stylegan2-standin-diffusion-projected_gan-last"
    assert options["D_kwargs"]["class_name"] == \
        "diffaug_noise.integrations.upstreams.projected_gan.DiffusionProjectedDiscriminator"
    assert options["loss_kwargs"]["upstream_class"] == "training.loss.ProjectedGANLoss"
    assert options["D_kwargs"]["noise_kwargs"]["sigma"] == 0.25 and options["loss_kwargs"]["diffusion"]["rounds"] == 2
    # upstream's config as it wrote it; the shim converts in the loop
    assert options["G_opt_kwargs"]["betas"] == [0, 0.99]
    forget_upstream(STANDIN, UPSTREAM_MODULES)
    with pytest.raises(Exception, match="betas|act1|cuda|NVIDIA|argument"):  # upstream as released, on this machine
        train_standin(tmp_path / "raw", "--kimg", "0.004", shims=False)


def test_bench_baseline_is_upstreams_own_gan_with_the_shims_alone(tmp_path, recorded):
    """`bench upstream`'s baseline run: with only the compatibility shims upstream trains (Adam's int beta
    included, which torch >= 2 rejects), with its own D and loss and no noise."""
    with ADAPTERS["projectedgan"].baseline(STANDIN, shims=True, pretrained=False) as train:
        train.main(["--outdir", str(tmp_path), "--cfg", "stylegan2", "--data", "x", "--gpus", "1", "--batch", "4",
                    "--kimg", "0.004"], standalone_mode=False)
        D, loss = train.RESULTS[-1]
    assert not isinstance(D, projected_gan.DiffusionProjectedDiscriminator) and recorded["noise"] == []
    assert type(loss).__name__ == "ProjectedGANLoss"


def test_backbone_weights_offline_say_what_to_do(tmp_path, recorded):
    with pytest.raises(UpstreamError, match="--backbone-weights"):
        train_standin(tmp_path, "--kimg", "0.004", pretrained=True)
    forget_upstream(STANDIN, UPSTREAM_MODULES)
    with ADAPTERS["projectedgan"].patched(STANDIN, shims=True, pretrained=False):
        from pg_modules import projector

        random_model = projector.timm.create_model("tf_efficientnet_lite0", pretrained=True)
        weights = tmp_path / "lite0.pth"
        torch.save(random_model.state_dict(), weights)
    forget_upstream(STANDIN, UPSTREAM_MODULES)
    D, _ = train_standin(tmp_path / "w", "--kimg", "0.004", pretrained=True, backbone_weights=str(weights))
    first = D.D.feature_network.pretrained.layer0[0].weight
    assert torch.equal(first, random_model.conv_stem.weight)  # the local file's weights, not a fresh draw


def test_t_to_d_feeds_one_t_per_sample_as_the_mini_discriminators_label(tmp_path, recorded):
    with pytest.raises(ValueError, match="per channel"):
        projected_gan.FeatureDiffusionSettings(t_to_d=True)
    D, _ = train_standin(tmp_path, "--kimg", "0.004", preset="paper", t_max=500, t_to_d=True)
    assert recorded["noise"] == []  # one shared draw per call, through sample_t/apply_transform
    for features, c in D.D.discriminator.calls[1:]:
        assert c.shape[1] == 1000 and torch.equal(c.sum(1), torch.ones(c.shape[0]))
        assert (c.argmax(1) >= 1).all() and (c.argmax(1) <= D.noise.T).all()


def test_fastgan_below_128_px_and_bad_options_name_the_fix(tmp_path, recorded):
    with pytest.raises(UpstreamError, match="use --cfg stylegan2"):
        with ADAPTERS["projectedgan"].patched(STANDIN, shims=True, pretrained=False) as train:
            train.main(["--outdir", str(tmp_path), "--cfg", "fastgan", "--data", "x", "--gpus", "1", "--batch", "4",
                        "--resolution", "64"], standalone_mode=False)
    with pytest.raises(ValueError, match="unknown d_pos 'middle'"):
        projected_gan.FeatureDiffusionSettings(d_pos="middle")


def test_cli_runs_projectedgan(tmp_path, recorded):
    from click.testing import CliRunner

    from diffaug_noise.cli.main import main

    data = tmp_path / "data"
    data.mkdir()
    result = CliRunner().invoke(main, ["run", "projectedgan", "--repo", str(STANDIN), "--data", str(data), "--outdir",
                                       str(tmp_path / "o"), "--no-pretrained", "--d-pos", "last", "--",
                                       "--cfg", "stylegan2", "--batch", "4", "--kimg", "0.008"])
    assert result.exit_code == 0, result.output
    (options,) = (tmp_path / "o").glob("*/training_options.json")
    assert json.loads(options.read_text())["D_kwargs"]["d_pos"] == "last"
