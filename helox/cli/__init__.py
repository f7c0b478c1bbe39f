"""The `helox` command line (helox.cli.main), one module per group of commands."""
