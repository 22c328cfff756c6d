"""automodel.cli: the ``automodel`` command, its route discovery and its launchers."""

__version__ = "0.4.1"
