"""Does taming-transformers' own main.py still train, and with the layer? The check behind docs/autoencoders.md.

Runs an unmodified taming-transformers checkout's ``main.py`` (3ba01b2) in this interpreter on a tiny ``VQModel``
(32 px, 16 random images written to ``--out``), with LPIPS's pretrained VGG replaced by the stand-in's fixed random
network (``tests/standins/taming``; nothing downloads) and, with ``--layer``, ``make_diffusion_aware`` applied to the
loss ``VQModel`` builds. ``main.py`` was written for pytorch-lightning 1.0 and OmegaConf 2.0; the run-time shims below,
each naming what was removed, are the fewest that let it train on pytorch-lightning 1.9.5 (the last 1.x). On
pytorch-lightning 2.x it stops at ``Trainer.add_argparse_args`` whatever is shimmed here, and ``VQModel`` itself
cannot train there (two optimisers need manual optimisation in 2.0). This is a check, not a supported path:

    pip install 'pytorch-lightning==1.9.5' omegaconf albumentations einops requests torchvision
    python tools/taming_main_check.py --repo ~/taming-transformers --out /tmp/taming-check --layer
    python tools/taming_main_check.py --repo ~/taming-transformers --out /tmp/taming-check --layer --resume

Each D step with the layer prints ``DIFFUSION global_step p T r_d``; ``--resume`` continues the last run to 16 steps.
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import inspect
import os
import pathlib
import runpy
import sys
import types

ROOT = pathlib.Path(__file__).resolve().parents[1]
LPIPS_FILE = ROOT / "tests" / "standins" / "taming" / "taming" / "modules" / "losses" / "lpips.py"
CONFIG = """model:
  base_learning_rate: 4.5e-6
  target: taming.models.vqgan.VQModel
  params:
    embed_dim: 8
    n_embed: 32
    ddconfig: {double_z: False, z_channels: 8, resolution: 32, in_channels: 3, out_ch: 3, ch: 32, ch_mult: [1, 2],
               num_res_blocks: 1, attn_resolutions: [], dropout: 0.0}
    lossconfig:
      target: taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator
      params: {disc_conditional: False, disc_in_channels: 3, disc_start: 2, disc_weight: 0.8, codebook_weight: 1.0,
               disc_ndf: 16}
data:
  target: main.DataModuleFromConfig
  params:
    batch_size: 4
    num_workers: 0
    train:
      target: taming.data.custom.CustomTrain
      params: {training_images_list_file: OUT/train.txt, size: 32}
lightning:  # keys OmegaConf 2.0 read as None when absent; 2.1+ raises
  trainer: {max_steps: 8, limit_val_batches: 0, num_sanity_val_steps: 0, accumulate_grad_batches: 1}
  logger: {target: pytorch_lightning.loggers.CSVLogger}
  modelcheckpoint: {}
  callbacks: {}
"""


def write_inputs(out: pathlib.Path) -> pathlib.Path:
    import numpy as np
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(16):
        paths.append(out / f"{i}.png")
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(paths[-1])
    (out / "train.txt").write_text("\n".join(map(str, paths)))
    config = out / "tiny.yaml"
    config.write_text(CONFIG.replace("OUT", str(out)))
    return config


def shim() -> None:
    """What taming's main.py needs of torch 1.7, pytorch-lightning 1.0 and OmegaConf 2.0, on today's versions."""
    import pytorch_lightning as pl
    from omegaconf import DictConfig, OmegaConf
    from pytorch_lightning.trainer import configuration_validator

    six = types.ModuleType("torch._six")  # removed in torch 2.0; taming/data/utils.py imports string_classes
    six.string_classes = (str,)
    sys.modules["torch._six"] = six
    pl.loggers.TestTubeLogger = type("TestTubeLogger", (), {})  # removed in 1.7; main.py's ImageLogger names it
    DictConfig.pretty = lambda self: OmegaConf.to_yaml(self)  # removed in OmegaConf 2.1

    init = pl.Trainer.__init__

    @functools.wraps(init)  # keeps the signature Trainer.from_argparse_args reads
    def trainer_init(self, *args, checkpoint_callback=None, **kwargs):  # removed in 1.7: pass it as a callback
        if checkpoint_callback is not None:
            kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), checkpoint_callback]
        init(self, *args, **kwargs)

    pl.Trainer.__init__ = trainer_init

    def old_hooks(trainer):  # on_pretrain_routine_start, removed in 1.8: main.py makes its run folders there
        for callback in trainer.callbacks:
            if "on_pretrain_routine_start" in type(callback).__dict__:
                callback.on_fit_start = callback.on_pretrain_routine_start

    configuration_validator._check_deprecated_callback_hooks = old_hooks

    def init_subclass(cls, **kwargs):  # on_train_batch_end lost dataloader_idx in 1.8: default it
        hook = cls.__dict__.get("on_train_batch_end")
        if hook is not None and "dataloader_idx" in inspect.signature(hook).parameters:
            def adapted(self, *args, _hook=hook, **kw):
                return _hook(self, *args, **({"dataloader_idx": 0} if len(args) < 6 else {}), **kw)
            cls.on_train_batch_end = adapted

    pl.Callback.__init_subclass__ = classmethod(init_subclass)


def standin_lpips() -> None:
    spec = importlib.util.spec_from_file_location("standin_lpips", LPIPS_FILE)
    lpips = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lpips)
    import taming.modules.losses.vqperceptual as vqperceptual

    vqperceptual.LPIPS = lpips.LPIPS


def with_layer() -> None:
    """make_diffusion_aware on the loss VQModel builds (before Lightning restores a checkpoint), and the D step's log
    printed as it reaches Lightning."""
    import pytorch_lightning as pl
    import taming.models.vqgan as vqgan

    from diffaug_noise.integrations.autoencoders import make_diffusion_aware

    build = vqgan.VQModel.__init__

    def build_with_layer(self, *args, **kwargs):
        build(self, *args, **kwargs)
        make_diffusion_aware(self.loss, batch_size=4, interval=1, kimg=0.05, target=0.1)

    vqgan.VQModel.__init__ = build_with_layer
    log_dict = pl.LightningModule.log_dict

    def log_and_print(self, values, *args, **kwargs):
        if "train/diffusion_T" in values:
            print("DIFFUSION", self.global_step, *(round(float(values[f"train/diffusion_{k}"]), 4)
                                                   for k in ("p", "T", "r_d")), flush=True)
        return log_dict(self, values, *args, **kwargs)

    pl.LightningModule.log_dict = log_and_print


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, help="a taming-transformers checkout (3ba01b2)")
    parser.add_argument("--out", required=True, help="a folder for the images, the config and main.py's logs/")
    parser.add_argument("--layer", action="store_true", help="make the loss diffusion-aware")
    parser.add_argument("--resume", action="store_true", help="resume the last run in --out to 16 steps")
    args = parser.parse_args(argv)
    repo, out = pathlib.Path(args.repo).expanduser().resolve(), pathlib.Path(args.out).resolve()
    config = write_inputs(out)
    os.chdir(out)  # main.py writes logs/ here
    sys.path.insert(0, str(repo))
    shim()
    standin_lpips()
    if args.layer:
        with_layer()
    if args.resume:
        last = sorted((out / "logs").iterdir())[-1]
        sys.argv = ["main.py", "--resume", str(last), "-t", "True", "--no-test", "True", "--max_steps", "16"]
    else:
        sys.argv = ["main.py", "--base", str(config), "-t", "True", "--no-test", "True"]
    runpy.run_path(str(repo / "main.py"), run_name="__main__")


if __name__ == "__main__":
    main()
