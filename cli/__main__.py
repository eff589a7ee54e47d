"""`python -m diffaug_noise.cli`: the console script, for running it from the interpreter in use."""
from . import run

run()
