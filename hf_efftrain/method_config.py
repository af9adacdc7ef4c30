"""The shape every method's knobs share, and the one mapping from ``<prefix>_*`` training arguments to them.

Each method folder has a ``config.py`` dataclass of its knobs (what a run saves and what a callback is built
from) and an ``arguments.py`` mixin of ``EfficientTrainingArguments`` whose fields are the same knobs as
command-line flags, named ``<prefix>_<knob>``. Deriving the config from those names, in one place, means a new
knob needs a config field and a flag, nothing else; and every config validates itself on construction the same
way, so an object that exists is a usable one. Example::

    @dataclass
    class ToyConfig(MethodConfig):
        every: float = 10

        def validate(self) -> ToyConfig:
            check_steps("toy_every", self.every)
            return self

    config_from_arguments(args, "toy", ToyConfig)    # ToyConfig(every=args.toy_every)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

ConfigT = TypeVar("ConfigT", bound="MethodConfig")


@dataclass
class MethodConfig:
    """Base of ``MATConfig``, ``TWAConfig``, ``CMDConfig``, ``GrowthConfig``, ``TransferConfig``: validated knobs.

    Subclasses add fields and override :meth:`validate`; construction (and :func:`dataclasses.replace`) runs it.
    """

    def __post_init__(self) -> None:
        self.validate()

    def validate(self: ConfigT) -> ConfigT:
        """Raise the method's ``ArgumentsError`` subclass naming the knob to fix; return ``self`` for chaining."""
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (what a run saves next to its state)."""
        return asdict(self)

    @classmethod
    def from_dict(cls: type[ConfigT], data: Mapping[str, Any]) -> ConfigT:
        """Inverse of :meth:`to_dict`, validated; unknown keys are ignored (a file from a newer version loads)."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def argument_names(arguments: Any, prefix: str, config_class: type[MethodConfig]) -> dict[str, str]:
    """Config field → argument name, for each field of ``config_class`` that ``arguments`` has as ``<prefix>_*``.

    ``arguments`` is a dataclass (class or instance) such as ``EfficientTrainingArguments``; a config field
    without a flag (e.g. MAT's ``gram_strategy``) is left out and keeps the config's default.
    """
    declared = {f.name for f in fields(arguments)}
    names = {f.name: f"{prefix}_{f.name}" for f in fields(config_class)}
    return {knob: flag for knob, flag in names.items() if flag in declared}


def config_from_arguments(arguments: Any, prefix: str, config_class: type[ConfigT], **overrides: Any) -> ConfigT:
    """The validated ``config_class`` that the ``<prefix>_*`` fields of ``arguments`` describe.

    ``overrides`` set knobs that come from elsewhere (MAT's ``seed`` is the run's ``args.seed``).
    """
    values = {knob: getattr(arguments, flag) for knob, flag in argument_names(arguments, prefix, config_class).items()}
    return config_class(**{**values, **overrides})
