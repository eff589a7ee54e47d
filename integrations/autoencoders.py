"""The LPIPS + PatchGAN loss of VQGAN and latent-diffusion autoencoders, made diffusion-aware in place.

taming-transformers' ``VQLPIPSWithDiscriminator``, latent-diffusion's ``LPIPSWithDiscriminator`` and
their many copies (other trainers paste them under their own module paths, some with Lightning 2's
manual optimisation) call their PatchGAN inside ``forward``: once on the reconstructions when the
autoencoder trains (``optimizer_idx == 0``), and twice when D trains (``optimizer_idx == 1``),
first on ``inputs.detach()``, then on ``reconstructions.detach()``. :func:`make_diffusion_aware`
changes such a loss object, whatever its class's path, so that

- ``loss.discriminator`` is a :class:`~diffaug_noise.DiffusionAwareDiscriminator`: D judges
  ``y = sqrt(abar_t) x + sqrt(1 - abar_t) sigma eps`` and sees ``t`` through a conditioning attached
  to its layers (``film-hooks`` by default); with ``cond`` (``disc_conditional``) the concatenated
  condition stays clean;
- in a D step, an input and its reconstruction get one ``t`` (and one ``eps``: ``share_eps``), sample by
  sample (:meth:`~diffaug_noise.DiffusionAwareDiscriminator.paired`);
- the controller reads D's logits on the inputs where the loss hands them to its own ``disc_loss``
  (hinge or vanilla, recognised by what it computes: both read the sign signal), and steps once per
  D step, only in training and from ``discriminator_iter_start`` (``disc_start``) on, when D trains;
- the D step's log gains ``{split}/diffusion_p``, ``diffusion_T`` and ``diffusion_r_d``;
- the state (``p``, ``T``, the controller, the conditioning) is in ``loss.state_dict()`` under
  ``discriminator.``, so Lightning's checkpoints carry it and a resume continues; a state that does not
  fit the loss is refused before anything in the loss changes, and a checkpoint saved without the
  layer loads D's weights into the wrapped D (the layer starting fresh).

The loss is recognised by what it has: ``discriminator`` (a module), ``disc_loss``,
``discriminator_iter_start`` and a ``forward`` taking ``inputs``, ``reconstructions``,
``optimizer_idx`` and ``global_step`` (by name: positional as in taming and latent-diffusion or
keyword-only as in manual-optimisation copies). Build the optimisers after the call (D gains the
conditioning's parameters): Lightning's ``configure_optimizers`` runs at ``fit``, after it.

Example:
    >>> from torch import nn
    >>> make_diffusion_aware(nn.Linear(2, 2), batch_size=4)
    Traceback (most recent call last):
    ...
    TypeError: Linear is not an autoencoder GAN loss: it has no discriminator, disc_loss, ...
"""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import nn

from diffaug_noise import DiffusionAwareDiscriminator

FORWARD_ARGUMENTS = ("inputs", "reconstructions", "optimizer_idx", "global_step")
ATTRIBUTES = ("discriminator", "disc_loss", "discriminator_iter_start")
SET_HERE = ("batch_size", "loss", "pair", "condition_channels", "logits", "share")  # what the loss decides


def missing(loss) -> list[str]:
    """What ``loss`` lacks of an autoencoder's GAN loss (empty when it is one): attributes, then forward's arguments.

    Example:
        >>> missing(nn.Linear(2, 2))[:2]
        ['discriminator', 'disc_loss']
    """
    gaps = [name for name in ATTRIBUTES if not hasattr(loss, name)]
    if "discriminator" not in gaps and not isinstance(loss.discriminator, nn.Module):
        gaps[0:0] = ["discriminator (a module)"]
    forward = getattr(loss, "forward", None)
    try:
        parameters = inspect.signature(forward).parameters if callable(forward) else {}
    except (TypeError, ValueError):  # a builtin without a signature
        parameters = {}
    return gaps + [f"forward({name})" for name in FORWARD_ARGUMENTS if name not in parameters]


def gan_loss(disc_loss) -> str:
    """``"hinge"`` or ``"vanilla"``: what the loss's own ``disc_loss(logits_real, logits_fake)`` computes.

    Checked against the closed forms on probe logits (copies rename the functions):
    hinge :math:`\\tfrac12(E[\\max(0, 1 - r)] + E[\\max(0, 1 + f)])`, vanilla
    :math:`\\tfrac12(E[\\mathrm{softplus}(-r)] + E[\\mathrm{softplus}(f)])`; a name of either is taken as is.

    Example:
        >>> gan_loss(lambda r, f: 0.5 * (torch.relu(1 - r).mean() + torch.relu(1 + f).mean()))
        'hinge'
    """
    if isinstance(disc_loss, str):
        if disc_loss in ("hinge", "vanilla"):
            return disc_loss
        raise ValueError(f"disc_loss {disc_loss!r} is neither 'hinge' nor 'vanilla', the two losses the autoencoders' "
                         f"D trains with")
    real = torch.tensor([[-0.5, 0.25, 2.0]], dtype=torch.float64)
    fake = torch.tensor([[0.5, -1.5, -3.0]], dtype=torch.float64)
    closed_forms = {
        "hinge": 0.5 * (F.relu(1 - real).mean() + F.relu(1 + fake).mean()),
        "vanilla": 0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean()),
    }
    try:
        value = disc_loss(real, fake)
    except Exception as error:  # a loss of another signature (exemplar weights) is not one we know
        raise ValueError(f"disc_loss {_name(disc_loss)} could not be probed as disc_loss(logits_real, logits_fake) "
                         f"({type(error).__name__}: {error}); it must be the hinge or the vanilla D loss") from None
    for name, expected in closed_forms.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1 and torch.isclose(value.double(), expected):
            return name
    raise ValueError(f"disc_loss {_name(disc_loss)} computes neither the hinge nor the vanilla D loss (probe logits "
                     f"gave {value!r}; hinge {float(closed_forms['hinge']):.4f}, vanilla "
                     f"{float(closed_forms['vanilla']):.4f})")


def _name(function) -> str:
    return getattr(function, "__qualname__", type(function).__name__)


class ObservedDiscLoss:
    """The loss's own ``disc_loss``, unchanged, that also hands D's logits on the reals to the controller in a
    counted D step (the loss passes them as ``logits_real``, whatever order it judged them in)."""

    def __init__(self, disc_loss, phases: DiscriminatorPhases):
        self.disc_loss, self.phases = disc_loss, phases

    def __call__(self, logits_real, logits_fake, *args, **kwargs):
        if self.phases.counting is not None:
            self.phases.counting.observe(logits_real)
        return self.disc_loss(logits_real, logits_fake, *args, **kwargs)


class DiscriminatorPhases:
    """The hooks on the loss: a D step's pairing, the controller's reads and steps, the log, the checked load."""

    def __init__(self, signature: inspect.Signature):
        self.signature = signature
        self.pairing = None  # the open paired() block of a D step
        self.counting = None  # the wrapped D while a D step counts for the controller
        self.split = "train"  # the D step's split, for the log

    def before(self, loss, args, kwargs):
        """Forward pre-hook: a D step opens a pairing block; it counts in training from disc_start on."""
        self.close()  # a forward interrupted by a BaseException skipped the hook that closes
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = bound.arguments
        if arguments["optimizer_idx"] != 1:
            return
        self.split = arguments.get("split", "train")
        wrapped = loss.discriminator
        self.pairing = wrapped.paired()
        self.pairing.__enter__()
        if loss.training and arguments["global_step"] >= loss.discriminator_iter_start:
            self.counting = wrapped

    def after(self, loss, args, kwargs, output):
        """Forward hook (also when forward raised): close the block; step the controller after a counted D step."""
        counted = self.counting
        self.close()
        if counted is None or output is None:  # not a counted D step, or forward raised
            return None
        counted.step()
        if isinstance(output, tuple) and len(output) == 2 and isinstance(output[1], dict):
            value, log = output
            device = value.device if isinstance(value, torch.Tensor) else None
            noise, split = counted.noise, self.split
            return value, {**log, f"{split}/diffusion_p": noise.p_value.detach().float(),
                           f"{split}/diffusion_T": noise.T_value.detach().float(),
                           f"{split}/diffusion_r_d": torch.tensor(counted.controller.r_d, device=device)}
        return None

    def close(self) -> None:
        if self.pairing is not None:
            self.pairing.__exit__(None, None, None)
        self.pairing = self.counting = None

    def check_load(self, loss, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                   error_msgs):
        """Load-state-dict pre-hook of the loss, before anything in it loads: a state saved without the layer gives
        the wrapped D its weights (the layer keeps its own state); shapes that differ, or a layer's state that does not
        fit, are refused here, so nothing changes. Missing or unexpected keys elsewhere are torch's to report (torch
        does not tell a hook whether the load is strict)."""
        wrapped, d_prefix = loss.discriminator, prefix + "discriminator."
        saved_d = {key[len(d_prefix):]: value for key, value in state_dict.items() if key.startswith(d_prefix)}
        if saved_d and set(saved_d) <= set(wrapped.D.state_dict()):  # the bare D's state: saved before the layer
            for key in saved_d:
                del state_dict[d_prefix + key]
            saved_d = {**{key: value for key, value in wrapped.state_dict().items() if not key.startswith("D.")},
                       **{f"D.{key}": value for key, value in saved_d.items()}}
            state_dict.update({d_prefix + key: value for key, value in saved_d.items()})
        own = loss.state_dict(prefix=prefix)
        wrong = [f"{key}: saved {tuple(value.shape)} vs {tuple(own[key].shape)}" for key, value in state_dict.items()
                 if isinstance(own.get(key), torch.Tensor)
                 and (not isinstance(value, torch.Tensor) or value.shape != own[key].shape)]
        if wrong:
            raise ValueError(f"state_dict shapes differ from {type(loss).__name__}'s ({'; '.join(wrong[:4])}); "
                             f"nothing was loaded")
        if saved_d:
            try:
                wrapped.check_state_dict(saved_d)
            except ValueError as error:
                raise ValueError(f"{error} Nothing was loaded.") from None


def make_diffusion_aware(loss: nn.Module, batch_size: int, cond_channels: int = 0,
                         **settings) -> DiffusionAwareDiscriminator:
    """Make an autoencoder's GAN loss diffusion-aware, in place; returns the wrapped D (``loss.discriminator``).

    See the module docstring for what changes. Call it once, before the optimisers are built.

    Args:
        loss: taming's ``VQLPIPSWithDiscriminator``, latent-diffusion's ``LPIPSWithDiscriminator`` or a copy.
        batch_size: images per D step over all ranks (the controller's step size).
        cond_channels: with ``disc_conditional``, the channels of the ``cond`` the loss concatenates after the
            image (they stay clean); 0 without.
        **settings: the :class:`~diffaug_noise.DiffusionAwareDiscriminator` settings: ``conditioning``, ``share_eps``,
            ``noise``, ``target``, ``interval``, ``kimg``, ``embed_dim``, ``layers``.

    Example:
        >>> class Loss(nn.Module):  # any class with what the autoencoders' losses have
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.discriminator, self.discriminator_iter_start = nn.Conv2d(3, 1, 4, 2, 1), 0
        ...         self.disc_loss = lambda r, f: 0.5 * (F.softplus(-r).mean() + F.softplus(f).mean())
        ...     def forward(self, inputs, reconstructions, optimizer_idx, global_step):
        ...         if optimizer_idx == 1:
        ...             return self.disc_loss(self.discriminator(inputs.detach()),
        ...                                   self.discriminator(reconstructions.detach())), {}
        >>> loss = Loss()
        >>> D = make_diffusion_aware(loss, batch_size=2, interval=1, kimg=1)
        >>> _ = loss(torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8), 1, 0)
        >>> D is loss.discriminator, D.loss, D.controller.step, D.noise.p > 0 or D.controller.r_d < 0.6
        (True, 'vanilla', 1, True)
    """
    if isinstance(getattr(loss, "discriminator", None), DiffusionAwareDiscriminator):
        raise ValueError(f"this {type(loss).__name__} is diffusion-aware already (its discriminator is a "
                         f"DiffusionAwareDiscriminator); call make_diffusion_aware once per loss")
    gaps = missing(loss)
    if gaps or not isinstance(loss, nn.Module):
        attributes = [g for g in gaps if not g.startswith("forward(")]
        arguments = [g[len("forward("):-1] for g in gaps if g.startswith("forward(")]
        parts = ([f"it has no {', '.join(attributes)}"] if attributes else []) + (
            [f"its forward has no {', '.join(arguments)}"] if arguments else []) + (
            [] if isinstance(loss, nn.Module) else ["it is not an nn.Module"])
        raise TypeError(f"{type(loss).__name__} is not an autoencoder GAN loss: {'; '.join(parts)} (as "
                        f"VQLPIPSWithDiscriminator of taming-transformers, LPIPSWithDiscriminator of latent-diffusion "
                        f"and their copies have)")
    given_here = sorted(set(settings) & set(SET_HERE))
    if given_here:
        raise ValueError(f"{', '.join(given_here)} come from the loss (or batch_size, cond_channels); drop them from "
                         f"the settings")
    conditional = bool(getattr(loss, "disc_conditional", False))
    if isinstance(cond_channels, bool) or not isinstance(cond_channels, int) or cond_channels < 0:
        raise ValueError(f"cond_channels must be an int >= 0 (the channels of cond); got {cond_channels!r}")
    if conditional and not cond_channels:
        raise ValueError("this loss has disc_conditional=True: pass cond_channels=k, the channels of the cond it "
                         "concatenates after the image (they stay clean)")
    if cond_channels and not conditional:
        raise ValueError(f"cond_channels={cond_channels} but this loss has disc_conditional=False: its D judges the "
                         f"image alone; drop cond_channels")
    kind = gan_loss(loss.disc_loss)
    D = loss.discriminator
    wrapped = DiffusionAwareDiscriminator(D, batch_size=batch_size, loss=kind, condition_channels=-cond_channels,
                                          **settings)
    place = next(iter(D.parameters()), None)
    if place is not None:
        wrapped.to(place.device)
    phases = DiscriminatorPhases(inspect.signature(loss.forward))
    loss.discriminator = wrapped
    loss.disc_loss = ObservedDiscLoss(loss.disc_loss, phases)
    loss.register_forward_pre_hook(phases.before, with_kwargs=True)
    loss.register_forward_hook(phases.after, with_kwargs=True, always_call=True)
    loss._register_load_state_dict_pre_hook(phases.check_load, with_module=True)
    return wrapped


__all__ = ["DiscriminatorPhases", "ObservedDiscLoss", "gan_loss", "make_diffusion_aware", "missing"]
