"""The `diffaug-noise` command line: thin click commands over the library."""
from __future__ import annotations

import sys


def run() -> None:
    """Console entry point: the CLI, or one line naming the extra to install when a dependency is missing."""
    from diffaug_noise.extras import MissingExtraError

    try:
        from .main import main
    except ImportError as err:
        if err.name not in ("click", "tqdm"):
            raise
        sys.exit(f"Error: the command line needs {err.name}, which is not installed: pip install 'diffaug-noise[cli]'")
    try:
        main()
    except MissingExtraError as err:
        sys.exit(f"Error: {err}")
