import torch
from pkg_resources import parse_version  # as upstream: gone from current setuptools

enabled = False
_use_pytorch_1_11_api = parse_version(torch.__version__) >= parse_version("1.11.0a")
