"""Attacks a curious server (or an outsider) runs against a federated training run.

``attacks.inversion``: gradient inversion (DLG, iDLG, Inverting Gradients, the Dropout
Inversion Attack, analytic recovery from a fully connected layer).
"""
