"""The ``cmer`` command line: one module per subcommand, dispatched by :mod:`contrastive_mer.cli.main`."""
