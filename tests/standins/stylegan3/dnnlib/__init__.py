from . import util
from .util import EasyDict

__all__ = ["EasyDict", "util"]
