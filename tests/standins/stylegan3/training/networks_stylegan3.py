from training.networks_stylegan2 import Generator as _Generator


class Generator(_Generator):
    """StyleGAN3's generator (alias-free synthesis) in upstream; the same tiny linear map here."""
