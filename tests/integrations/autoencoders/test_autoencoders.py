"""make_diffusion_aware on the GAN loss of VQGAN and latent-diffusion autoencoders, in place.

Every test runs on four sources of the loss class: the stand-ins of taming-transformers' ``VQLPIPSWithDiscriminator``
and latent-diffusion's ``LPIPSWithDiscriminator`` (tests/standins/taming, tests/standins/latent_diffusion), always,
and the real classes imported from unmodified checkouts when DIFFAUG_NOISE_TAMING_REPO (taming-transformers 3ba01b2)
and DIFFAUG_NOISE_LDM_REPO (latent-diffusion, which imports taming: both must be set) point at them. Upstream's LPIPS
loads pretrained VGG weights, which cannot be downloaded here: the real classes get the stand-in's LPIPS (a fixed
random conv net of the same call signature), set on the module that builds the loss; nothing else of upstream is
changed.
"""
import copy
import dataclasses
import importlib
import importlib.util
import io
import os
import sys

import pytest
import torch
from torch import nn

import diffaug_noise as dn
from diffaug_noise.integrations.autoencoders import make_diffusion_aware, missing
from helpers import STANDINS, forget_upstream

LPIPS_FILE = STANDINS / "taming" / "taming" / "modules" / "losses" / "lpips.py"
TAMING, LDM = os.environ.get("DIFFAUG_NOISE_TAMING_REPO"), os.environ.get("DIFFAUG_NOISE_LDM_REPO")


@dataclasses.dataclass
class Source:
    """Where a loss class comes from and how its forward is called."""

    name: str
    paths: list
    module: str
    cls: str
    kind: str  # "vq": forward(codebook_loss, inputs, reconstructions, ...), "kl": (inputs, reconstructions, posteriors)
    standin_lpips: bool = False  # a real checkout: its LPIPS replaced by the stand-in's

    def build(self, **kwargs):
        loss_class = getattr(self.loaded, self.cls)
        if self.kind == "vq":
            kwargs.setdefault("disc_ndf", 16)
        return loss_class(**kwargs)

    def call(self, loss, x, xrec, optimizer_idx, global_step, last_layer, **kwargs):
        if self.kind == "vq":
            return loss(torch.zeros(()), x, xrec, optimizer_idx, global_step, last_layer=last_layer, **kwargs)
        posteriors = self.distributions.DiagonalGaussianDistribution(torch.zeros(x.shape[0], 4, 2, 2))
        return loss(x, xrec, posteriors, optimizer_idx, global_step, last_layer=last_layer, **kwargs)


SOURCES = [
    Source("taming-standin", [STANDINS / "taming"], "taming.modules.losses.vqperceptual", "VQLPIPSWithDiscriminator",
           "vq"),
    Source("ldm-standin", [STANDINS / "latent_diffusion", STANDINS / "taming"], "ldm.modules.losses.contperceptual",
           "LPIPSWithDiscriminator", "kl"),
    pytest.param(Source("taming", [TAMING], "taming.modules.losses.vqperceptual", "VQLPIPSWithDiscriminator", "vq",
                        True),
                 marks=pytest.mark.skipif(not TAMING, reason="set DIFFAUG_NOISE_TAMING_REPO to a taming checkout")),
    pytest.param(Source("ldm", [LDM, TAMING], "ldm.modules.losses.contperceptual", "LPIPSWithDiscriminator", "kl",
                        True),
                 marks=pytest.mark.skipif(not (LDM and TAMING), reason="set DIFFAUG_NOISE_LDM_REPO and "
                                                                        "DIFFAUG_NOISE_TAMING_REPO")),
]


@pytest.fixture(params=SOURCES, ids=lambda s: s.name)
def source(request, monkeypatch):
    source = request.param
    roots = ("taming", "ldm")
    if source.standin_lpips:  # upstream's lpips.py imports it; first imported inside the namespace package, torch's
        pytest.importorskip("torchvision")  # op registration inspects that package and fails
    for path in source.paths:
        forget_upstream(path, roots)
    for path in reversed(source.paths):  # not monkeypatch.syspath_prepend: upstream's taming is a namespace package
        sys.path.insert(0, str(path))
    source.loaded = importlib.import_module(source.module)
    if source.kind == "kl":
        source.distributions = importlib.import_module("ldm.modules.distributions.distributions")
    if source.standin_lpips:
        spec = importlib.util.spec_from_file_location("standin_lpips", LPIPS_FILE)
        lpips = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(lpips)
        monkeypatch.setattr(source.loaded, "LPIPS", lpips.LPIPS)
    yield source
    for path in source.paths:
        forget_upstream(path, roots)


class Autoencoder:
    """The autoencoder down to its last layer: a decoder from fixed latents, so reconstructions get gradients."""

    def __init__(self, batch=4, size=32):
        self.decoder = nn.Conv2d(8, 3, 3, padding=1)
        self.z = torch.randn(batch, 8, size, size)
        self.x = torch.rand(batch, 3, size, size) * 2 - 1

    def reconstruct(self):
        return self.decoder(self.z)


def judged_by(wrapped):
    """What D itself receives, and the t it is given, call by call."""
    seen = {"inputs": [], "t": [], "outputs": []}
    wrapped.D.register_forward_pre_hook(lambda module, args: seen["inputs"].append(args[0].detach().clone()))
    wrapped.D.register_forward_hook(lambda module, args, out: seen["outputs"].append(out.detach().clone()))
    given = wrapped.conditioning.given
    wrapped.conditioning.given = lambda t: (seen["t"].append(t.clone()), given(t))[1]
    return seen


def sqrt_abar(T, t):
    """sqrt(abar_t) of the linear schedule 1e-4 -> 2e-2 over T steps, in float64 (independent of the library)."""
    betas = torch.linspace(1e-4, 2e-2, T, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0).sqrt()[t - 1]


def test_both_phases_noise_what_D_judges_and_only_a_counted_D_step_feeds_and_steps_the_controller(source):
    loss = source.build(disc_start=2, disc_loss="hinge")
    wrapped = make_diffusion_aware(loss, batch_size=4, interval=1, kimg=1, noise=dn.DiffusionNoise(p=0.5))
    assert loss.discriminator is wrapped and wrapped.loss == "hinge"
    seen, ae = judged_by(wrapped), Autoencoder()

    xrec = ae.reconstruct()  # the autoencoder's step: D judges the noised reconstructions, gradients pass the noise
    aeloss, _ = source.call(loss, ae.x, xrec, 0, 5, ae.decoder.weight)
    aeloss.backward()
    assert ae.decoder.weight.grad is not None and len(seen["inputs"]) == 1
    assert not torch.allclose(seen["inputs"][0], xrec.detach(), atol=1e-3)
    assert wrapped.controller.step == 0 and float(wrapped.controller._sums[1]) == 0

    for step, counted in ((0, False), (1, False), (2, True), (3, True)):  # D steps; D trains from disc_start = 2
        before, T = len(seen["inputs"]), wrapped.noise.T  # T of this step (a counted one updates it after)
        _, log = source.call(loss, ae.x, xrec.detach(), 1, step, ae.decoder.weight)
        (y_real, y_fake), (t_real, t_fake) = seen["inputs"][before:], seen["t"][before:]
        assert torch.equal(t_real, t_fake)  # one t per pair ...
        a = sqrt_abar(T, t_real).float().view(-1, 1, 1, 1)
        torch.testing.assert_close(y_real - y_fake, a * (ae.x - xrec.detach()), atol=1e-5, rtol=1e-4)  # ... one eps
        assert wrapped.controller.step == (step - 1 if counted else 0)
        assert ("train/diffusion_T" in log) == counted
    patches = seen["outputs"][-2][0].numel()
    assert float(wrapped.controller._sums[1]) == 0  # cleared by the last step's update (interval 1)
    assert float(log["train/diffusion_T"]) == wrapped.noise.T
    assert float(log["train/diffusion_p"]) == pytest.approx(wrapped.noise.p)
    assert float(log["train/diffusion_r_d"]) == pytest.approx(wrapped.controller.r_d)
    expected = float(torch.sign(seen["outputs"][-2]).mean())  # the reals' logits of the last D step
    assert wrapped.controller.r_d == pytest.approx(expected) and patches > 1

    loss.eval()  # validation runs the D phase too: it neither feeds nor steps the controller
    _, log = source.call(loss, ae.x, xrec.detach(), 1, 10, ae.decoder.weight, split="val")
    assert wrapped.controller.step == 2 and "val/diffusion_T" not in log and float(wrapped.controller._sums[1]) == 0


def test_p_follows_r_d_up_while_D_separates_and_down_while_it_calls_the_reals_fake(source):
    torch.manual_seed(0)
    loss = source.build(disc_start=0, disc_loss="vanilla")
    batch, interval, kimg, target = 4, 2, 0.2, 0.6
    wrapped = make_diffusion_aware(loss, batch_size=batch, interval=interval, kimg=kimg, target=target)
    assert wrapped.loss == "vanilla"
    seen, ae = judged_by(wrapped), Autoencoder()
    opt = torch.optim.Adam(wrapped.parameters(), 2e-3)
    x, bad = ae.x, torch.zeros_like(ae.x)
    p, moves = wrapped.noise.p, []
    for step in range(24):
        reals, recs = (x, bad) if step < 12 else (bad, x)  # then D's old reals come as the fakes
        before = len(seen["outputs"])
        d_loss, _ = source.call(loss, reals, recs, 1, step, ae.decoder.weight)
        opt.zero_grad()
        d_loss.backward()
        opt.step()
        if (step + 1) % interval == 0:  # an update: r_d from this interval's real logits, computed here
            logits = torch.cat([o.flatten() for o in seen["outputs"][before - 2 * (interval - 1):][::2]])
            r_d = float(torch.sign(logits.double()).mean())
            p = min(max(p + (1 if r_d > target else -1 if r_d < target else 0) * batch * interval / (kimg * 1000),
                        0.0), 1.0)
            assert wrapped.controller.r_d == pytest.approx(r_d) and wrapped.noise.p == pytest.approx(p)
            moves.append(wrapped.noise.p)
    assert wrapped.noise.T == wrapped.noise.t_min + round(wrapped.noise.p * (wrapped.noise.t_max - wrapped.noise.t_min))
    assert max(moves[:6]) > 0 and moves[5] > moves[0] - 1e-12  # D separates: T up
    assert min(moves[6:]) < max(moves[:7])  # D calls the reals fake: T down


def _trained(source, seed, **options):
    torch.manual_seed(seed)
    loss = source.build(disc_start=0, disc_loss="hinge")
    wrapped = make_diffusion_aware(loss, batch_size=4, interval=2, kimg=0.5, **options)
    ae, opt = Autoencoder(), torch.optim.Adam(wrapped.parameters(), 2e-3)
    for step in range(5):  # D learns to tell the images from zeros: T rises
        d_loss, _ = source.call(loss, ae.x, torch.zeros_like(ae.x), 1, step, ae.decoder.weight)
        opt.zero_grad()
        d_loss.backward()
        opt.step()
    return loss, wrapped


def _snapshot(loss):
    return {k: (v.clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)) for k, v in loss.state_dict().items()}


def _same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:
            assert repr(a[key]) == repr(b[key]), key


def test_the_state_is_in_the_loss_state_dict_and_a_resume_continues_exactly(source):
    saved_loss, saved = _trained(source, 0)
    assert saved.noise.p > 0 and saved.controller.step == 5
    buffer = io.BytesIO()
    torch.save(saved_loss.state_dict(), buffer)  # as Lightning's checkpoint holds it
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert any(k.startswith("discriminator.conditioning.") for k in state) and "discriminator._extra_state" in state

    torch.manual_seed(1)  # another initialisation, then the checkpoint
    loss = source.build(disc_start=0, disc_loss="hinge")
    resumed = make_diffusion_aware(loss, batch_size=4, interval=2, kimg=0.5)
    loss.load_state_dict(state)
    assert (resumed.noise.p, resumed.noise.T, resumed.controller.step) == (saved.noise.p, saved.noise.T, 5)
    assert torch.equal(resumed.controller._sums, saved.controller._sums)
    ae = Autoencoder()
    for one in (saved_loss, loss):  # the next D step, same draws: the same loss, the same update
        torch.manual_seed(7)
        one.out = source.call(one, ae.x, torch.zeros_like(ae.x), 1, 5, ae.decoder.weight)[0]
    assert torch.equal(saved_loss.out, loss.out) and resumed.noise.p == saved.noise.p and resumed.controller.step == 6


@pytest.mark.parametrize("change", ["embed_dim", "sigma", "gan loss", "partial"])
def test_a_state_that_does_not_fit_is_refused_and_changes_nothing(source, change):
    options = {"embed_dim": {"embed_dim": 8}, "sigma": {"noise": dn.DiffusionNoise(sigma=0.2)}}.get(change, {})
    other_loss, _ = _trained(source, 0, **options)
    state = other_loss.state_dict()
    if change == "gan loss":
        torch.manual_seed(0)
        other_loss = source.build(disc_start=0, disc_loss="vanilla")
        make_diffusion_aware(other_loss, batch_size=4, interval=2, kimg=0.5)
        state = other_loss.state_dict()
    if change == "partial":
        del state["discriminator._extra_state"]
    loss, wrapped = _trained(source, 3)
    before = _snapshot(loss)
    with pytest.raises(ValueError, match="othing was loaded") as refused:
        loss.load_state_dict(state)
    assert "\n" not in str(refused.value)
    _same(before, _snapshot(loss))


def test_a_checkpoint_saved_before_the_layer_gives_the_wrapped_D_its_weights(source):
    torch.manual_seed(0)
    plain = source.build(disc_start=0)
    torch.manual_seed(1)
    loss = source.build(disc_start=0)
    wrapped = make_diffusion_aware(loss, batch_size=4, noise=dn.DiffusionNoise(p=0.25))
    conditioning = {k: v.clone() for k, v in wrapped.conditioning.state_dict().items()}
    loss.load_state_dict(plain.state_dict())  # strict: every key accounted for
    _same(plain.discriminator.state_dict(), wrapped.D.state_dict())
    _same(conditioning, wrapped.conditioning.state_dict())
    assert wrapped.noise.p == 0.25


def test_the_condition_of_a_conditional_D_stays_clean(source):
    loss = source.build(disc_start=0, disc_conditional=True, disc_in_channels=5)
    with pytest.raises(ValueError, match="cond_channels=k"):
        make_diffusion_aware(loss, batch_size=4)
    wrapped = make_diffusion_aware(loss, batch_size=4, cond_channels=2, noise=dn.DiffusionNoise(p=1.0))
    seen, ae = judged_by(wrapped), Autoencoder()
    cond = torch.randn(4, 2, 32, 32)
    xrec = ae.reconstruct()
    source.call(loss, ae.x, xrec, 0, 0, ae.decoder.weight, cond=cond)
    source.call(loss, ae.x, xrec.detach(), 1, 0, ae.decoder.weight, cond=cond)
    assert len(seen["inputs"]) == 3 and torch.equal(seen["t"][1], seen["t"][2])
    for judged, image in zip(seen["inputs"], (xrec.detach(), ae.x, xrec.detach())):
        assert torch.equal(judged[:, 3:], cond) and not torch.allclose(judged[:, :3], image, atol=1e-3)


def test_what_is_not_such_a_loss_is_named_in_one_line(source):
    with pytest.raises(TypeError) as refused:
        make_diffusion_aware(nn.Linear(2, 2), batch_size=4)
    message = str(refused.value)
    assert "\n" not in message and "discriminator, disc_loss, discriminator_iter_start" in message
    assert "inputs, reconstructions, optimizer_idx, global_step" in message
    loss = source.build(disc_start=0)
    del loss.discriminator_iter_start
    assert missing(loss) == ["discriminator_iter_start"]
    loss = source.build(disc_start=0)
    loss.disc_loss = lambda r, f: (r - f).mean()  # a WGAN critic's loss: not one the autoencoders use
    with pytest.raises(ValueError, match="neither the hinge nor the vanilla"):
        make_diffusion_aware(loss, batch_size=4)
    loss = source.build(disc_start=0)
    make_diffusion_aware(loss, batch_size=4)
    with pytest.raises(ValueError, match="diffusion-aware already"):
        make_diffusion_aware(loss, batch_size=4)


class ManualOptimisationCopy(nn.Module):
    """A copy as trainers written for Lightning 2 paste it (the call form of sgm's GeneralLPIPSWithDiscriminator):
    keyword-only phase arguments, its own module path, its own PatchGAN and a renamed hinge."""

    def __init__(self, disc_start):
        super().__init__()
        self.discriminator = nn.Sequential(nn.Conv2d(3, 16, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(16, 1, 4, 1, 1))
        self.discriminator_iter_start = disc_start
        self.disc_loss = self.hinge

    @staticmethod
    def hinge(real, fake):
        return 0.5 * (torch.relu(1 - real).mean() + torch.relu(1 + fake).mean())

    def forward(self, inputs, reconstructions, *, regularization_log, optimizer_idx, global_step, last_layer=None,
                split="train"):
        if optimizer_idx == 0:
            return -self.discriminator(reconstructions.contiguous()).mean(), {}
        logits_real = self.discriminator(inputs.contiguous().detach())
        logits_fake = self.discriminator(reconstructions.contiguous().detach())
        return self.disc_loss(logits_real, logits_fake), {}


def test_a_manual_optimisation_copy_under_another_path_is_recognised_and_stepped_by_its_d_updates():
    loss = ManualOptimisationCopy(disc_start=2)
    wrapped = make_diffusion_aware(loss, batch_size=4, interval=1, kimg=1, noise=dn.DiffusionNoise(p=0.5))
    seen, ae = judged_by(wrapped), Autoencoder(size=16)
    opt_g, opt_d = torch.optim.Adam(ae.decoder.parameters(), 1e-3), torch.optim.Adam(wrapped.parameters(), 1e-3)
    for step in range(5):  # training_step of a LightningModule with automatic_optimization = False
        xrec = ae.reconstruct()
        g_loss, _ = loss(ae.x, xrec, regularization_log={}, optimizer_idx=0, global_step=step)
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        d_loss, log = loss(ae.x, xrec.detach(), regularization_log={}, optimizer_idx=1, global_step=step)
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        assert torch.equal(seen["t"][-1], seen["t"][-2]) and not torch.equal(seen["t"][-2], seen["t"][-3])
        assert wrapped.controller.step == max(step - 1, 0) and ("train/diffusion_T" in log) == (step >= 2)
    assert wrapped.loss == "hinge"
