from ldm.modules.losses.contperceptual import LPIPSWithDiscriminator  # noqa: F401  (upstream's package exports it)
