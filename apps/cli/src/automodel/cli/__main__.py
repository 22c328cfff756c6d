"""``python -m automodel.cli`` is the ``automodel`` command."""

from automodel.cli.app import run

run()
