"""``python -m service.cli`` runs the `pprl` command line."""

from service.cli import main

main()
