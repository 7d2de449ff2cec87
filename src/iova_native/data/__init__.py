"""The embedded default trace (default-trace.log.gz), read through importlib.resources."""
