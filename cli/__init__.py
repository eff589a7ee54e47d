"""The `diffaug-noise` command line: thin click commands over the library."""
