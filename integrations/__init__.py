"""Run-time adapters for unmodified upstream GAN codebases (the only place that knows their names).

The framework is here (the adapter contract :mod:`.adapter`, the StyleGAN skeleton :mod:`.skeleton`,
:mod:`.kit`, :mod:`.shims`, ...); the upstreams' adapters are in :mod:`.upstreams`, one module each.
:data:`ADAPTERS` maps each ``diffaug-noise run NAME`` to its :class:`~.adapter.Adapter`; the CLI is
generated from it. Adding an adapter: one module subclassing ``Adapter`` (or ``StyleGANAdapter``), one
``register`` line below, which checks the contract (docs/integrations.md, "Adding an adapter").

Each upstream module stays importable under its earlier path (``diffaug_noise.integrations.stylegan2_ada``,
...): snapshots and training options of earlier runs name classes there.

>>> sorted(ADAPTERS)
['insgen', 'projectedgan', 'r3gan', 'stylegan2', 'stylegan3']
"""
import sys

from . import kit
from .adapter import ADAPTERS, Adapter, check_contract, register
from .skeleton import StyleGANAdapter
from .snapshots import load_snapshot, snapshot_shims
from .spec import Upstream, UpstreamError
from .upstreams import insgen, projected_gan, r3gan, stylegan2_ada, stylegan3

register(stylegan2_ada.StyleGAN2Adapter)
register(insgen.InsGenAdapter)
register(projected_gan.ProjectedGANAdapter)
register(stylegan3.StyleGAN3Adapter)
register(r3gan.R3GANAdapter)

for _module in (insgen, projected_gan, r3gan, stylegan2_ada, stylegan3):  # the paths of earlier versions
    sys.modules[f"{__name__}.{_module.__name__.rsplit('.', 1)[1]}"] = _module

__all__ = ["ADAPTERS", "Adapter", "StyleGANAdapter", "Upstream", "UpstreamError", "check_contract", "kit",
           "load_snapshot", "register", "snapshot_shims"]
