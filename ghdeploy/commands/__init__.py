"""One module per command: each takes config and options, returns data for the renderer."""
