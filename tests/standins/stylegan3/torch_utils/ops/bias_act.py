_plugin = None


def _init():
    return False  # as on a machine that cannot build the CUDA op: the reference implementation is used
