_plugin = None


def _init():
    """Upstream builds a CUDA extension here and raises when the build fails."""
    raise ModuleNotFoundError(f"No module named '{__name__.rsplit('.', 1)[-1]}_plugin'")
