_inited = False
_plugin = None


def _init():
    """Upstream builds a CUDA extension here (only on CUDA); a failed build warns and returns False."""
    return _plugin is not None
