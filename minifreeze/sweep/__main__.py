"""`python -m minifreeze.sweep ...`: the command line of the freeze study (the runner is __init__.py)."""

from .. import cli
from . import main

cli.run(main)
