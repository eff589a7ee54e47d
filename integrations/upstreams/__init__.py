"""The upstream adapters, one module per codebase: only what that upstream does differently.

The framework they build on (the adapter contract, the StyleGAN skeleton, the kit, the shims) is
``diffaug_noise.integrations``; ``integrations/__init__.py`` registers each adapter and keeps each
module importable under its earlier path (``diffaug_noise.integrations.stylegan2_ada``, ...), which
snapshots and training options of earlier runs name.
"""
