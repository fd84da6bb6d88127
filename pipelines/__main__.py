"""``python -m pipelines`` runs the ``raypipe`` command line."""

from pipelines.cli import main

main()
