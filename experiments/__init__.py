"""Experiments: the CLI, scenario grids, the result store, tables, plots and reports.

The top layer: it imports ``attacks``, ``defenses`` and ``fl``; nothing imports it.
"""
