"""A tiny autoencoder trained with taming's LPIPS + PatchGAN loss on 200 digits: no D, D, and D with the layer.

The question of taming-transformers #44/#93/#129 and latent-diffusion #350, at toy size on a CPU: D switches
on early (``disc_start``) and, on little data, memorises the reals; does the adaptive noise keep the
reconstructions from paying for it? Three arms, same networks, data and seeds:

- ``ae``: the loss without its GAN term (``disc_factor=0``): the reconstruction-only reference;
- ``plain``: the loss as upstream builds it, D on from step ``--disc-start``;
- ``layer``: the same, after ``make_diffusion_aware(loss, batch_size)``.

Data: scikit-learn's digits at 16 px (grey repeated to 3 channels), 200 stratified training images, 500 held-out
ones. The autoencoder: two strided convolutions down to an 8x4x4 latent and back (no quantiser: the codebook term
is 0). The loss: ``VQLPIPSWithDiscriminator`` from ``--taming`` (a taming-transformers checkout, its LPIPS replaced
by the stand-in's fixed random conv net, since VGG weights cannot be downloaded) or, by default, the stand-in of
``tests/standins/taming`` (same signature and phases), with ``NLayerDiscriminator(n_layers=2, ndf=32)``.

Reported per arm and seed: L1 and MSE of the held-out and the training reconstructions, FD_digits of the
held-out reconstructions against the held-out digits (lower is better), ``r_d`` of D on the clean training reals
(the share of its patch logits above 0, as a sign mean, over the last 100 D steps) and on the held-out reals
(D's memorisation shows as the gap), and the layer's ``T`` and controller ``r_d``. Run from the repository root:

    python tools/autoencoder_study.py --seeds 0 1 2 --json autoencoder-study.json
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import sys
import time

import torch
from torch import nn

ROOT = pathlib.Path(__file__).resolve().parents[1]
STANDIN = ROOT / "tests" / "standins" / "taming"
ARMS = ("ae", "plain", "layer")


def loss_class(taming: str | None):
    """taming's VQLPIPSWithDiscriminator: the checkout's (with the stand-in's LPIPS) or the stand-in's."""
    sys.path.insert(0, str(taming or STANDIN))
    import taming.modules.losses.vqperceptual as vqperceptual

    if taming:
        spec = importlib.util.spec_from_file_location("standin_lpips", STANDIN / "taming" / "modules" / "losses" /
                                                      "lpips.py")
        lpips = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(lpips)
        vqperceptual.LPIPS = lpips.LPIPS
    return vqperceptual.VQLPIPSWithDiscriminator


class Autoencoder(nn.Module):
    def __init__(self, latent: int = 8):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 32, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(32, 64, 4, 2, 1),
                                     nn.LeakyReLU(0.2), nn.Conv2d(64, latent, 1))
        self.decoder = nn.Sequential(nn.Conv2d(latent, 64, 1), nn.ReLU(), nn.ConvTranspose2d(64, 32, 4, 2, 1),
                                     nn.ReLU(), nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU())
        self.conv_out = nn.Conv2d(32, 3, 3, padding=1)  # the last layer: taming's adaptive weight reads its gradient

    def forward(self, x):
        return self.conv_out(self.decoder(self.encoder(x)))


def digits(seed_split: int = 0):
    from diffaug_noise.data.digits import load_digits, stratified_subset

    images, labels = load_digits(resolution=16)
    images = images.repeat(1, 3, 1, 1)
    train = stratified_subset(labels, 200, seed=seed_split)
    rest = torch.ones(len(labels), dtype=torch.bool)
    rest[train] = False
    held_out = torch.nonzero(rest).flatten()[torch.randperm(int(rest.sum()), generator=torch.Generator().manual_seed(
        seed_split))[:500]]
    return images[train], images[held_out]


def sign_mean(D, x):
    with torch.no_grad():
        return float(torch.sign(D(x)).mean())


def run(arm: str, seed: int, Loss, steps: int, disc_start: int, batch: int, kimg: float, classifier) -> dict:
    from diffaug_noise.integrations.autoencoders import make_diffusion_aware
    from diffaug_noise.metrics.frechet import feature_statistics, frechet_distance

    train, held_out = digits()
    torch.manual_seed(seed)
    model = Autoencoder()
    loss = Loss(disc_start=disc_start, disc_num_layers=2, disc_ndf=32, disc_loss="hinge",
                disc_factor=0.0 if arm == "ae" else 1.0)
    wrapped = make_diffusion_aware(loss, batch_size=batch, kimg=kimg) if arm == "layer" else None
    bare_D = wrapped.D if wrapped is not None else loss.discriminator
    opt_ae = torch.optim.Adam(model.parameters(), 1e-3, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(loss.discriminator.parameters(), 1e-3, betas=(0.5, 0.9))
    generator = torch.Generator().manual_seed(seed)
    real_signs, trace = [], []
    for step in range(steps):
        x = train[torch.randint(0, len(train), (batch,), generator=generator)]
        xrec = model(x)
        aeloss, _ = loss(torch.zeros(()), x, xrec, 0, step, last_layer=model.conv_out.weight)
        opt_ae.zero_grad(set_to_none=True)
        aeloss.backward()
        opt_ae.step()
        if arm == "ae":
            continue
        dloss, _ = loss(torch.zeros(()), x, xrec.detach(), 1, step, last_layer=model.conv_out.weight)
        opt_d.zero_grad(set_to_none=True)
        dloss.backward()
        opt_d.step()
        if step >= steps - 100:
            bare_D.eval()  # the clean reals, D's BatchNorm in inference mode: its own view of the data
            real_signs.append((sign_mean(bare_D, x), sign_mean(bare_D, held_out[:batch * 4])))
            bare_D.train()
        if wrapped is not None and step % 100 == 0:
            trace.append([step, wrapped.noise.T, wrapped.controller.r_d])
    model.eval()
    with torch.no_grad():
        rec_held, rec_train = model(held_out), model(train)
        fd = frechet_distance(feature_statistics(classifier.features(rec_held)),
                              feature_statistics(classifier.features(held_out)))
    row = {"arm": arm, "seed": seed, "l1_held_out": float((rec_held - held_out).abs().mean()),
           "mse_held_out": float(((rec_held - held_out) ** 2).mean()),
           "l1_train": float((rec_train - train).abs().mean()), "fd_digits_held_out": fd}
    if real_signs:
        row["r_d_train_clean"] = sum(s[0] for s in real_signs) / len(real_signs)
        row["r_d_held_out_clean"] = sum(s[1] for s in real_signs) / len(real_signs)
    if wrapped is not None:
        row.update(T=wrapped.noise.T, p=wrapped.noise.p, r_d_controller=wrapped.controller.r_d, trace=trace)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--disc-start", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--kimg", type=float, default=10.0, help="the controller's speed (the run sees 96 kimg)")
    parser.add_argument("--taming", help="a taming-transformers checkout (default: the stand-in)")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    from diffaug_noise.metrics.digits_classifier import load_classifier

    torch.set_flush_denormal(True)  # subnormal floats in D made some runs tens of times slower on the CPU

    Loss, classifier, rows = loss_class(args.taming), load_classifier(), []
    for seed in args.seeds:
        for arm in args.arms:
            start = time.time()
            row = run(arm, seed, Loss, args.steps, args.disc_start, args.batch, args.kimg, classifier)
            row["wall_s"] = round(time.time() - start, 1)
            rows.append(row)
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "trace"}),
                  flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"args": vars(args), "torch": torch.__version__,
                                                       "threads": torch.get_num_threads(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
