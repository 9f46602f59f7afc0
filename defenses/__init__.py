"""Defenses against leakage from federated updates; each composes with the federation."""
