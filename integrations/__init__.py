"""Run-time adapters for unmodified upstream GAN codebases (the only place that knows their names).

:data:`ADAPTERS` maps each ``diffaug-noise run NAME`` to its :class:`~.adapter.Adapter`; the CLI
is generated from it. Adding an adapter: one module building an ``Adapter``, one ``register``
line below (docs/integrations.md, "Adding an adapter").

>>> sorted(ADAPTERS)
['insgen', 'projectedgan', 'r3gan', 'stylegan2', 'stylegan3']
"""
from . import insgen, kit, projected_gan, r3gan, stylegan2_ada, stylegan3
from .adapter import ADAPTERS, Adapter, patched_upstream, register
from .snapshots import load_snapshot, snapshot_shims
from .spec import Upstream, UpstreamError

register(stylegan2_ada.ADAPTER)
register(insgen.ADAPTER)
register(projected_gan.ADAPTER)
register(stylegan3.ADAPTER)
register(r3gan.ADAPTER)

__all__ = ["ADAPTERS", "Adapter", "Upstream", "UpstreamError", "kit", "load_snapshot", "patched_upstream", "register",
           "snapshot_shims"]
