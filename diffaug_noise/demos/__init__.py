"""The built-in demos: ``toy`` (25 Gaussians), ``digits`` (real limited data), ``guidance`` (classifier guidance).

Each is a package of its own; none imports another. What they share is here: :mod:`.ensemble` (K
runs as one batched network), :mod:`.grid` (the 25-Gaussians data of both 2-D demos) and
:mod:`.training` (what D sees per member, the spread of results over seeds).
"""
