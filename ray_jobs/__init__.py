"""Entrypoints for ``ray job submit``: parse arguments, call ``pipelines``, return an exit code."""
