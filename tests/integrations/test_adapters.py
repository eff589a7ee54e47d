"""The adapter contract: every registered adapter keeps it, an incomplete one is refused at registration, a sixth
adapter written and registered at run time, pre-flight checks.

The block between the markers is the smallest example of docs/integrations.md ("Adding an
adapter"): one module's worth of code for tests/standins/minimal_gan, an ``Adapter`` subclass
registered with one call, then driven through the generated ``diffaug-noise run minimal``
command; no CLI file knows it.
"""
import dataclasses
import pickle
import re
import shutil
import subprocess
import warnings

import pytest
import torch
from click.testing import CliRunner

import diffaug_noise.integrations as integrations
from diffaug_noise.cli.main import main
from diffaug_noise.controller import AdaptiveController
from diffaug_noise.integrations import ADAPTERS, check_contract
from diffaug_noise.integrations.adapter import CONTRACT
from diffaug_noise.integrations.preflight import check_gpus, check_resume
from diffaug_noise.integrations.spec import warn_if_untested
from helpers import STANDINS, forget_upstream

STANDIN = STANDINS / "minimal_gan"

# ---- adapter module: diffaug_noise/integrations/upstreams/minimal_gan.py (docs/integrations.md) ----
from diffaug_noise import DiffusionNoise  # noqa: E402
from diffaug_noise.integrations import Adapter, Upstream, kit  # noqa: E402
from diffaug_noise.integrations.adapter_settings import DiffusionSettings, knob  # noqa: E402
from diffaug_noise.integrations.patching import construct  # noqa: E402

MINIMAL = Upstream(name="minimal_gan", clone="git clone https://example.org/minimal_gan", env_var="MINIMAL_GAN_REPO",
                   tested_commits=("0" * 40,), markers=("train.py", "training/training_loop.py"),
                   names={"train": ["main", "setup_training_kwargs"], "training.training_loop": ["training_loop"]})


@dataclasses.dataclass
class MinimalSettings(DiffusionSettings):
    scale: float = knob(1.0, "Scale of the noised input before D (an adapter's own knob).", kind=float, minimum=0.0)


class MinimalD(torch.nn.Module):
    """Upstream's D behind the noise; the noise is a submodule, so p and T are saved with D."""

    def __init__(self, upstream_class, noise_kwargs, scale, **upstream_kwargs):
        super().__init__()
        self.noise, self.scale = DiffusionNoise(**noise_kwargs), scale
        self.D = construct(upstream_class, **upstream_kwargs)

    def forward(self, img):
        return self.D(self.scale * self.noise(img)[0])


class MinimalLoss(kit.LossWrapper):
    """Upstream's loss whose run_D feeds the real logits to the controller; one update per iteration."""

    def __init__(self, D, upstream_class, diffusion):
        # this upstream has no torch_utils.training_stats to report to: stats=None
        super().__init__(construct(upstream_class, D=D), D.noise, diffusion, stats=None)
        self._run_D, self.inner.run_D = self.inner.run_D, self.run_D

    def run_D(self, img):
        logits = self._run_D(img)
        self.observe_if_real(img, logits)
        return logits

    def accumulate_gradients(self, real):  # its loop passes the reals alone: its own, not the kit's keyword form
        with self.reals(real):
            self.inner.accumulate_gradients(real)
        self.round_done("D", sync=True)  # one round per iteration


class MinimalAdapter(Adapter):
    name = "minimal"
    title = "Diffusion-MinimalGAN"
    upstream = MINIMAL
    settings_class = MinimalSettings
    d_phases = ("D",)  # the phase name its loss gives round_done
    t_input = "none"  # D is blind to t
    signal = "sign"
    resume = "none"
    description = "The noise before a linear D."
    example = "--repo ~/minimal_gan --data x --outdir runs"
    cpu_note = "-- --iterations 8"

    def entry_patches(self, modules, settings):
        """Upstream's options name our classes, which build upstream's inside."""
        train = modules["train"]
        setup = train.setup_training_kwargs

        def setup_training_kwargs(*args, **kwargs):
            kw = setup(*args, **kwargs)
            kw["D_kwargs"] = kit.swap_class(kw["D_kwargs"], f"{__name__}.MinimalD",
                                            noise_kwargs=settings.noise_kwargs(), scale=settings.scale)
            kw["loss_kwargs"] = kit.swap_class(kw["loss_kwargs"], f"{__name__}.MinimalLoss",
                                               diffusion=self.loss_settings(settings, kw["batch"]))
            return kw

        return [(train, "setup_training_kwargs", setup_training_kwargs)]

    def compat_patches(self, settings):
        return []  # no shims: this upstream runs as it is
# ---- the registration, one line in integrations/__init__.py: register(minimal_gan.MinimalAdapter) ----


@pytest.fixture
def minimal():
    forget_upstream(STANDIN, ("train", "training"))
    adapter = integrations.register(MinimalAdapter)
    yield adapter
    del integrations.ADAPTERS["minimal"]
    forget_upstream(STANDIN, ("train", "training"))


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_every_registered_adapter_keeps_the_contract(name):
    adapter = ADAPTERS[name]
    check_contract(adapter)
    assert adapter.name == name and adapter.presets[0] == adapter.settings().preset
    assert all(re.fullmatch(r"[0-9a-f]{40}", c) for c in adapter.upstream.tested_commits)
    for field in dataclasses.fields(adapter.settings_class):
        assert field.metadata["help"] and field.metadata["kind"] is not None, (name, field.name)
    controller = adapter.controller_kwargs(adapter.settings())
    assert controller["signal"] == adapter.signal
    AdaptiveController(DiffusionNoise(), batch_size=4, **controller)  # what its loss builds, from its settings
    help_text = " ".join(CliRunner().invoke(main, ["run", name, "--help"]).output.split())
    assert f"t reaches D: {adapter.t_input} (" in help_text and f"Controller signal: {adapter.signal}." in help_text
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['noise_sd'\]"):
        adapter.settings(noise_sd=0.1)  # the fork's spelling is a CLI alias only


def test_registering_checks_the_name_once(minimal):
    assert integrations.register(MinimalAdapter) is minimal  # the same adapter again: a no-op
    other = type("OtherMinimal", (MinimalAdapter,), {"title": "another"})
    with pytest.raises(ValueError, match="an adapter named 'minimal' is already registered"):
        integrations.register(other)


def _without(piece):
    """MinimalAdapter with one piece of the contract left out."""
    declared = {key: value for key, value in vars(MinimalAdapter).items() if key in CONTRACT}
    return type("Incomplete", (Adapter,), {k: v for k, v in declared.items() if k != piece})


@pytest.mark.parametrize("piece", list(CONTRACT))
def test_an_adapter_that_leaves_a_piece_out_is_refused_in_one_line_naming_it(piece):
    with pytest.raises(TypeError) as refused:
        integrations.register(_without(piece))
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"adapter {'Incomplete' if piece == 'name' else repr('minimal')} "
                                                       f"declares no {piece}: {CONTRACT[piece]}")
    assert "minimal" not in integrations.ADAPTERS


@dataclasses.dataclass
class PresetSecond(DiffusionSettings):
    scale: float = knob(1.0, "A knob before preset.", kind=float)
    preset: str = knob("paper", "Presets.", kind=str, choices=("paper",))


@dataclasses.dataclass
class NoPreset:
    scale: float = 1.0


@pytest.mark.parametrize("change, message", [
    (dict(d_phases="Dmain"), "d_phases must be a non-empty tuple of phase names; got 'Dmain'"),
    (dict(settings_class=NoPreset), "settings_class must be a DiffusionSettings dataclass"),
    (dict(t_input="timestep"), "t_input 'timestep' is none of embedding, raw, label"),
    (dict(signal="hinge"), "signal 'hinge' is none of sign, relativistic"),
    (dict(resume="snapshot progress"), "resume 'snapshot progress' needs a resume_progress knob in MinimalSettings"),
    (dict(name="Minimal GAN"), "name must be a command name"),
    (dict(upstream="minimal_gan"), "upstream must be an Upstream; got str"),
])
def test_a_wrongly_declared_piece_is_refused_in_one_line(change, message):
    with pytest.raises(TypeError, match=re.escape(message)):
        integrations.register(type("Wrong", (MinimalAdapter,), change))


def test_the_preset_field_is_found_by_name_not_position():
    adapter = type("PresetSecondAdapter", (MinimalAdapter,), {"settings_class": PresetSecond})()
    check_contract(adapter)
    assert adapter.presets == ("paper",)


def test_an_upstream_must_list_its_loop_module_and_full_commits():
    spec = dict(name="x", clone="git clone x", env_var="X_REPO", tested_commits=("0" * 40,), markers=("train.py",))
    with pytest.raises(ValueError, match="names must list the loop module 'training.training_loop'"):
        Upstream(**spec, names={"train": ["main"]})
    with pytest.raises(ValueError, match=r"tested_commits must be full 40-hex commit hashes; got \['abc123'\]"):
        Upstream(**{**spec, "tested_commits": ("abc123",)}, names={"training.training_loop": ["training_loop"]})


def test_a_registered_adapter_is_a_cli_command_with_generated_options(minimal, tmp_path, noise_calls):
    help_text = CliRunner().invoke(main, ["run", "minimal", "--help"]).output
    assert "Diffusion-MinimalGAN" in help_text and "--scale FLOAT RANGE" in help_text
    assert "--sigma, --noise-sd" in help_text and "the preset's: paper 0.05" in help_text
    assert "minimal" in CliRunner().invoke(main, ["run", "--help"]).output

    data = tmp_path / "data"
    data.mkdir()
    result = CliRunner().invoke(main, ["run", "minimal", "--repo", str(STANDIN), "--data", str(data), "--outdir",
                                       str(tmp_path / "out"), "--noise-sd", "0.3", "--target", "-1", "--scale", "2",
                                       "--", "--iterations", "8"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    ticks = [line for line in result.output.splitlines() if line.startswith("tick ")]
    assert len(ticks) == 8 and all(re.search(r"diffusion p [\d.]+ +T \d+ +r_d ([-+\d.]+|none yet)", t) for t in ticks)
    assert ticks[0].endswith("r_d none yet") and not any("nan" in t for t in ticks)  # before the first update
    with open(tmp_path / "out" / "snapshot.pkl", "rb") as f:
        D = pickle.load(f)["D"]
    assert type(D).__name__ == "MinimalD" and D.scale == 2.0 and D.noise.sigma == 0.3
    assert D.noise.p > 0  # target -1: every adjustment raises p (8 iterations, interval 4: two steps)
    assert len(noise_calls["noise"]) == 16 and len(noise_calls["observe"]) == 8  # real and fake per iteration
    torchrun = CliRunner().invoke(main, ["run", "minimal", "--repo", str(STANDIN), "--data", str(data), "--outdir",
                                         str(tmp_path / "out"), "--launcher", "torchrun"])
    assert torchrun.exit_code == 1 and "minimal starts upstream with --launcher spawn, not torchrun" in torchrun.output


def test_preflight_names_the_fix_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(integrations.UpstreamError,
                       match=r"^--gpus 4 asks for 4 CUDA devices; this machine has 0: pass --gpus 1"):
        check_gpus(["--gpus", "4"], shims=True)
    with pytest.raises(integrations.UpstreamError, match="keep --shims"):
        check_gpus(["--gpus=1"], shims=False)
    check_gpus(["--outdir", "x"], shims=True)  # one process on the CPU: the shims' mechanics mode

    good = tmp_path / "network-snapshot-000004.pkl"
    good.write_bytes(pickle.dumps({"D": [1, 2, 3], "step": 4}))
    check_resume(["--resume", str(good)], trust_pickle=True)
    check_resume(["--resume", "ffhq256"], trust_pickle=True)  # a name upstream resolves itself
    for bad, data in (("truncated.pkl", good.read_bytes()[:-5]), ("garbage.pkl", b"\x00not a pickle at all")):
        (tmp_path / bad).write_bytes(data)
        with pytest.raises(integrations.UpstreamError, match=rf"--resume '.*{bad}' is not a readable snapshot"):
            check_resume([f"--resume={tmp_path / bad}"], trust_pickle=True)
    with pytest.raises(integrations.UpstreamError, match="does not exist"):
        check_resume(["--resume", str(tmp_path / "missing.pkl")], trust_pickle=True)
    with pytest.raises(integrations.UpstreamError, match="--trust-pickle"):
        check_resume(["--resume", str(good)], trust_pickle=False)


def test_cli_reports_preflight_failures_without_a_traceback(minimal, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    data = tmp_path / "data"
    data.mkdir()
    result = CliRunner().invoke(main, ["run", "minimal", "--repo", str(STANDIN), "--data", str(data), "--outdir",
                                       str(tmp_path), "--gpus", "2"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: --gpus 2 asks for 2 CUDA devices")


def test_an_untested_checkout_commit_gives_one_warning(tmp_path):
    repo = tmp_path / "minimal_gan"
    shutil.copytree(STANDIN, repo)
    for cmd in (["init", "-q"], ["add", "."], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x"]):
        subprocess.run(["git", "-C", str(repo), *cmd], check=True)
    with pytest.warns(UserWarning,
                      match=r"is at minimal_gan commit [0-9a-f]{12}; the adapter is tested against 000000000000"):
        warn_if_untested(MINIMAL, repo)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_untested(MINIMAL, STANDIN)  # a folder inside this project's repository is no checkout of its own


@pytest.mark.parametrize("name", sorted(ADAPTERS))
@pytest.mark.parametrize("option, value, message", [
    ("target", 2.0, "target must lie in [-1, 1]; got 2.0"),
    ("target", -1.5, "target must lie in [-1, 1]; got -1.5"),
    ("sigma", 0.0, "sigma must be a finite number > 0; got 0.0"),
    ("sigma", float("nan"), "sigma must be a finite number > 0; got nan"),
    ("t_min", 0, "t_min must be an int >= 1"),
    ("t_dist", "gauss", "unknown t_dist 'gauss'; choose one of priority, uniform"),
    ("preset", "mine", "unknown preset 'mine'"),
])
def test_every_adapter_checks_every_knob_as_the_demos_do(name, option, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ADAPTERS[name].settings(**{option: value})


def test_run_refuses_a_target_beyond_what_r_d_can_reach(tmp_path):
    from click.testing import CliRunner

    from diffaug_noise.cli.main import main

    result = CliRunner().invoke(main, ["run", "stylegan2", "--data", str(tmp_path), "--outdir", str(tmp_path),
                                       "--target", "2"])
    assert result.exit_code == 2 and "'--target': 2.0 is not in the range -1.0<=x<=1.0" in result.output
