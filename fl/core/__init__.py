"""General helpers every layer uses: one-line user errors, registries, run folders, KEY=VALUE options.

Nothing here knows about federated learning, attacks or defenses.
"""
