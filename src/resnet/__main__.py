"""``python -m resnet`` runs the command-line interface."""

try:
    from resnet.cli import main
except KeyboardInterrupt:  # Ctrl-C while Python starts: as quiet as one during the command itself
    raise SystemExit(130) from None

raise SystemExit(main())
