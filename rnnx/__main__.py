"""``python -m rnnx ...``: the rnnx command."""
import sys

from .cli.main import main

sys.exit(main())
