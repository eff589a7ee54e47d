"""The metrics `eval` computes and the named protocols of the papers (no torch-fidelity needed to read them).

>>> PROTOCOLS["fid50k_full"]["num_fake"], PROTOCOLS["fid50k_full"]["num_real"] is None
(50000, True)
"""
from __future__ import annotations

METRICS = ("fid", "kid", "precision", "recall")
# StyleGAN2-ADA's metric names and sample counts (metrics/metric_main.py; fid10k_full is projected-gan's), as
# the forks report them: generated images, and real ones (None: the whole dataset). KID uses 100 subsets of
# 1,000 and precision/recall k = 3, torch-fidelity's defaults and upstream's settings.
PROTOCOLS = {
    "fid50k_full": dict(metrics=("fid",), num_fake=50_000, num_real=None),
    "fid10k_full": dict(metrics=("fid",), num_fake=10_000, num_real=None),
    "fid50k": dict(metrics=("fid",), num_fake=50_000, num_real=50_000),
    "kid50k_full": dict(metrics=("kid",), num_fake=50_000, num_real=1_000_000),
    "pr50k3_full": dict(metrics=("precision", "recall"), num_fake=50_000, num_real=200_000),
}
