"""The `cellbridge` command line: thin shells over the library calls, one module per command."""
