"""Snapshots and options written by earlier versions still load: the class paths they name stay importable.

``fixtures/earlier_objects.pkl`` was pickled by diffaug-noise 49ad166, before the adapters moved to
``integrations/upstreams/``, with (in that version's tree)::

    D = kit.DiffusionDiscriminator(3, "torch.nn.Identity", noise_kwargs=dict(t_min=5, t_max=20, p=0.25), t_dim=8)
    D.D = torch.nn.Bilinear(12, 3 + 8, 1); D.images_seen.fill_(1234)
    raw = kit.DiffusionDiscriminator(0, "torch.nn.Identity", noise_kwargs=dict(t_min=5, t_max=20, p=0.5),
                                     t_label="raw")
    projected = projected_gan.DiffusionProjectedDiscriminator("torch.nn.Identity",
                                                              noise_kwargs=dict(t_min=5, t_max=20, p=0.75))
    pickle.dump({"D": D, "raw_D": raw, "projected_D": projected, "noised": stylegan3.NoisedD(raw),
                 "classes": [stylegan2_ada.DiffusionLoss, stylegan3.DiffusionStyleGAN3Loss, stylegan3.NoisedD,
                             r3gan.DiffusionR3GANLoss, projected_gan.DiffusionProjectedDiscriminator,
                             projected_gan.DiffusionProjectedGANLoss, kit.DiffusionDiscriminator],
                 "inputs": (img, c, t), "logits": D(img, c, t)}, f, protocol=4)

so it names the modules as they were (``diffaug_noise.integrations.stylegan2_ada``, ``.projected_gan``, ...).
"""
import pathlib
import pickle

import torch

from diffaug_noise.integrations.snapshots import pickled_modules

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "earlier_objects.pkl"
OLD_MODULES = {"diffaug_noise.integrations.kit", "diffaug_noise.integrations.stylegan2_ada",
               "diffaug_noise.integrations.stylegan3", "diffaug_noise.integrations.r3gan",
               "diffaug_noise.integrations.projected_gan"}


def test_objects_pickled_by_an_earlier_version_load_and_run():
    assert pickled_modules(FIXTURE) >= OLD_MODULES  # the file really names the old paths
    with open(FIXTURE, "rb") as f:
        old = pickle.load(f)
    img, c, t = old["inputs"]
    with torch.no_grad():
        assert torch.equal(old["D"](img, c, t), old["logits"])  # the same network, the same label of t
    assert (old["D"].noise.p, old["D"].noise.T, int(old["D"].images_seen)) == (0.25, 5 + round(0.25 * 15), 1234)
    assert old["raw_D"].noise.p == 0.5 and old["projected_D"].noise.p == 0.75
    assert old["noised"].D is not None and all(isinstance(cls, type) for cls in old["classes"])


RENAMED = {"DiffusionLoss": "DiffusionStyleGAN2Loss"}  # stylegan2_ada's loss, named apart from the kit's base now


def test_every_class_path_earlier_snapshots_and_options_name_still_resolves():
    """Training options of earlier runs name the adapters' classes at their old modules (protocol-0 globals)."""
    names = {"stylegan2_ada": ("DiffusionDiscriminator", "DiffusionLoss", "RawTimestep"),
             "stylegan3": ("DiffusionDiscriminator", "DiffusionStyleGAN3Loss", "NoisedD"),
             "r3gan": ("DiffusionDiscriminator", "DiffusionR3GANLoss"),
             "projected_gan": ("DiffusionProjectedDiscriminator", "DiffusionProjectedGANLoss", "BackboneTimm"),
             "kit": ("DiffusionDiscriminator", "TimestepLabelSettings")}
    for module, attributes in names.items():
        for name in attributes:
            found = pickle.loads(f"cdiffaug_noise.integrations.{module}\n{name}\n.".encode())
            assert found.__name__ == RENAMED.get(name, name), (module, name)
