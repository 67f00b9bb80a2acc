"""`python -m engine` is the `consentry` command."""

from engine.cli import main

main()
