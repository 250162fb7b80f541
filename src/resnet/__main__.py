"""``python -m resnet`` runs the command-line interface."""

import sys

try:
    from resnet.cli import main
except KeyboardInterrupt:  # Ctrl-C while still importing: one line, as everywhere else
    sys.stderr.write("resnet: interrupted\n")
    raise SystemExit(130) from None

raise SystemExit(main())
