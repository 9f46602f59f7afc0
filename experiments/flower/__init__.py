"""The Flower App entry points for ``flwr run .`` (components named in pyproject's ``[tool.flwr.app]``)."""
