"""ClientApp of the Flower App: local training (and the defense's mods) from the run config."""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from experiments.flower.run_config import composition
from fl.federation.client import handle_query, handle_train, train_only


def _composition(context: Context):  # -> Composition
    return composition(tuple(sorted(dict(context.run_config).items())), side="client")


def defense_mods(message: Message, context: Context, call_next) -> Message:
    """Chain the run's defense mods (known only from the run config) around the handler."""
    handler = call_next
    for mod in reversed(_composition(context).defense.client_mods()):
        handler = _chain(train_only(mod), handler)
    return handler(message, context)


def _chain(mod, call_next):
    def handler(message: Message, context: Context) -> Message:
        return mod(message, context, call_next)

    return handler


app = ClientApp(mods=[defense_mods])


@app.train()
def train(message: Message, context: Context) -> Message:
    comp = _composition(context)
    return handle_train(comp.client_spec, comp.defense, message, context)


@app.query()
def query(message: Message, context: Context) -> Message:
    return handle_query(message, context)
