"""``python tests/helpers/tiny_cli.py -m rs_sam.cli ARGS``: rs-sam with tiny random encoders.

The subprocess tests configure a one-line shell script running this file as "the Python
with rs-sam", so the child process builds the fast tiny models too.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rs_sam.cli.main import cli
from tests.helpers.tiny_models import use_tiny_encoders

if __name__ == "__main__":
    if sys.argv[1:3] != ["-m", "rs_sam.cli"]:
        sys.exit(f"usage: {sys.argv[0]} -m rs_sam.cli ARGS (got {sys.argv[1:3]})")
    use_tiny_encoders()
    cli.main(args=sys.argv[3:], prog_name="rs-sam")
