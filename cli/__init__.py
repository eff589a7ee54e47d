"""The `diffaug-noise` command line: thin click commands over the library."""
from __future__ import annotations

import sys


def run() -> None:
    """Console entry point: the CLI, or one line naming the extra to install when the CLI's own dependencies are
    missing."""
    try:
        from .main import main
    except ImportError as err:
        if err.name not in ("click", "tqdm"):
            raise
        sys.exit(f"Error: the command line needs {err.name}, which is not installed: pip install 'diffaug-noise[cli]'")
    main()
