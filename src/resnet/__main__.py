"""``python -m resnet`` runs the command-line interface."""

import sys

try:
    from resnet.cli import main
except KeyboardInterrupt:  # Ctrl-C while Python starts: one line, as during the command itself
    sys.stderr.write("resnet: interrupted\n")
    raise SystemExit(130) from None

raise SystemExit(main())
