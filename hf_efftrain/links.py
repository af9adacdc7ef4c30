"""How the callbacks of different methods coordinate in any Trainer: through the model they all receive.

transformers passes every callback the same ``model`` but not the callback list, so methods cannot look each other
up. Instead, a method whose phase needs every parameter's gradient (TWA's projected gradient) announces it on the
model, and a method that skips gradient work (MAT's gates) listens there. The announcement is remembered, so the
order of the callbacks in the Trainer does not matter: a listener that arrives late is called at once. This is what
makes ``Trainer(callbacks=[MATCallback(...), TWACallback(...)])`` (or TRL's ``SFTTrainer``) behave like
``EfficientTrainer``. Example::

    listen_whole_gradients(model, mat_callback, mat_callback.release)   # MAT, at train begin
    need_whole_gradients(model)                                         # TWA, when its phase begins
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

_ATTRIBUTE = "_hf_efftrain_links"


@dataclass
class _Links:
    needed: bool = False
    listeners: dict[int, Callable[[], None]] = field(default_factory=dict)  # id(owner) -> listener


def _links(model: nn.Module) -> _Links:
    links = model.__dict__.get(_ATTRIBUTE)
    if links is None:
        links = _Links()
        model.__dict__[_ATTRIBUTE] = links  # plain attribute: not a parameter, buffer or submodule
    return links


def listen_whole_gradients(model: nn.Module, owner: object, listener: Callable[[], None]) -> None:
    """Call ``listener`` when a method needs every gradient (at once if one already announced it)."""
    links = _links(model)
    links.listeners[id(owner)] = listener
    if links.needed:
        listener()


def stop_listening(model: nn.Module, owner: object) -> None:
    """Remove ``owner``'s listener (at train end)."""
    _links(model).listeners.pop(id(owner), None)


def need_whole_gradients(model: nn.Module) -> None:
    """Announce that every parameter's gradient is needed from now on; tells every listener."""
    links = _links(model)
    links.needed = True
    for listener in list(links.listeners.values()):
        listener()


def whole_gradients_done(model: nn.Module) -> None:
    """Forget the announcement (a new run on the same model starts without it)."""
    _links(model).needed = False
