"""The ``slipway`` command line: one module per command, loaded only when called."""
