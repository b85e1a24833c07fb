"""The ``xpnet`` subcommands, one module each, named as the subcommand: :mod:`~.check`,
:mod:`~.train`, :mod:`~.evaluate`, :mod:`~.predict` and :mod:`~.export`; what several of them
share is in :mod:`~.common`.

Each subcommand's module has ``add_parser(subcommands)``, which adds the subcommand and its
options to the parser of :mod:`xpnet.cli`, and ``run(args)``, which does what it says and
returns the exit status; a bad input raises an :class:`~xpnet.errors.XPNetError`, which
:func:`xpnet.cli.main` prints as one line.
"""
