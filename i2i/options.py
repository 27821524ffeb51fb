"""Component options: read from a factory's signature, checked against recipe values.

A plugin declares its options simply by writing keyword parameters with defaults and type
annotations, e.g. ``def unet(in_channels, out_channels, *, depth: int = 8,
norm: Literal["batch", "instance", "none"] = "batch")``. Parameters without a default
(``in_channels``...) are supplied by the engine and are not recipe options.
"""

from __future__ import annotations

import inspect
import reprlib
import types
import typing
from dataclasses import dataclass
from collections.abc import Collection
from typing import Any, Callable, Literal, Union

from .errors import RecipeError, did_you_mean

_NO_DEFAULT = inspect.Parameter.empty


@dataclass(frozen=True)
class Option:
    """One recipe option of a component."""

    name: str
    annotation: Any
    default: Any

    @property
    def type_name(self) -> str:
        """The annotation in words (``an integer``, ``'a' | 'b'``), for ``i2i list`` and errors."""
        return describe_type(self.annotation)

    def check(self, value: Any) -> bool:
        """Whether a recipe value fits the annotation (an integer fits a float, as TOML has ``1``
        for ``1.0``; a bool never fits an integer)."""
        return matches_type(value, self.annotation)


def _signature_of(factory: Callable) -> Callable | None:
    """What declares a factory's options: the function, or the ``__init__`` a class defines.

    A class that defines no ``__init__`` of its own (a loss with no options) inherits
    ``nn.Module.__init__(*args, **kwargs)`` or ``object.__init__``, which declare nothing: it
    takes no options, rather than any.
    """
    if not inspect.isclass(factory):
        return factory
    for klass in factory.__mro__:
        if "__init__" in vars(klass):
            inherited = klass is object or klass.__module__.split(".")[0] == "torch"
            return None if inherited else klass.__init__
    return None


def factory_options(factory: Callable) -> dict[str, Option]:
    """The recipe options a factory accepts: its parameters that have defaults."""
    target = _signature_of(factory)
    if target is None:
        return {}
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return {}
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolved forward references: fall back to raw annotations
        hints = {}
    options = {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or param.default is _NO_DEFAULT:
            continue
        annotation = hints.get(param.name, param.annotation)
        if annotation is _NO_DEFAULT:
            annotation = Any if param.default is None else type(param.default)
        options[param.name] = Option(param.name, annotation, param.default)
    return options


def required_parameters(factory: Callable) -> list[str]:
    """The factory's parameters without a default, in order (``self`` left out)."""
    target = _signature_of(factory)
    if target is None:
        return []
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return []
    if inspect.isclass(factory) and params and params[0].name == "self":
        params = params[1:]
    return [p.name for p in params if p.default is _NO_DEFAULT and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def takes_arguments(factory: Callable, count: int) -> bool:
    """Whether the factory can be called with ``count`` positional arguments (options aside);
    a factory whose signature cannot be read is given the benefit of the doubt."""
    try:
        inspect.signature(factory).bind_partial(*([None] * count))
    except TypeError:
        return False
    except ValueError:
        return True
    return True


def accepts_any_option(factory: Callable) -> bool:
    """Whether the factory takes ``**options``: then an unknown recipe key is passed on, not refused."""
    target = _signature_of(factory)
    if target is None:
        return False
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is p.VAR_KEYWORD for p in params)


def validate_options(
    where: str, values: dict[str, Any], options: dict[str, Option], *, open_ended: bool = False,
    table_keys: Collection[str] = (), plugin: str = "",
) -> None:
    """Raise :class:`RecipeError` for an unknown option or a value of the wrong type.
    ``table_keys``: the keys the recipe table holds besides the options (``name``, a loss's
    ``weight``), suggested and listed too: ``wieght`` is more likely a slip of those. ``plugin``
    names the component's plugin where the fault is its own."""
    for key, value in values.items():
        option = options.get(key)
        if option is None:
            if open_ended:
                continue
            from .recipe import reference_option_hint

            own = ", ".join(sorted(table_keys))
            if options:
                listed = f"options: {', '.join(sorted(options))}" + (f" (and the table's own {own})" if own else "")
            else:
                listed = "it takes no options" + (f" (the table holds only its own {own})" if own else "")
            hint = reference_option_hint(key) or did_you_mean(key, [*options, *table_keys])
            raise RecipeError(f"{where}.{key}: unknown option{hint}; {listed}")
        if not option.check(value):
            if not recipe_can_give(option.annotation):
                of = f" of plugin '{plugin}'" if plugin else ""
                raise RecipeError(f"{where}.{key}: the component{of} declares this option as {option.type_name}, which no "
                                  "recipe value can be (a recipe gives strings, numbers, true/false, lists and tables); "
                                  "report this to the plugin's author (declare it str, say, and convert it in the factory)")
            raise RecipeError(
                f"{where}.{key} = {format_value(value)}: expected {option.type_name}"
            )


def recipe_can_give(annotation: Any) -> bool:
    """Whether some TOML value fits ``annotation``: not a ``pathlib.Path`` or another class a
    recipe cannot spell (such an option keeps its default whatever the recipe says)."""
    if annotation is Any or annotation is object or annotation in (bool, int, float, str, list, tuple, dict):
        return True
    if annotation is None or annotation is type(None):
        return False
    union = _union_args(annotation)
    if union is not None:
        return any(recipe_can_give(arg) for arg in union)
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return True
    if origin in (list, tuple, typing.Sequence, dict):
        return True
    return not isinstance(annotation, type)  # an annotation matches_type lets through


def as_declared(value: Any, annotation: Any) -> Any:
    """``value`` with the integers TOML gives for a ``float`` option made floats (``3`` for
    ``3.0``, also inside lists and tuples), so a factory gets the type it declared: an int
    there turns ``torch.full(shape, value)`` into an integer tensor."""
    if isinstance(value, bool):
        return value
    if annotation is float and isinstance(value, int):
        return float(value)
    union = _union_args(annotation)
    if union is not None:
        if isinstance(value, int) and float in union and int not in union:
            return float(value)
        fitting = [arg for arg in union if matches_type(value, arg)]
        return as_declared(value, fitting[0]) if len(fitting) == 1 else value
    origin = typing.get_origin(annotation)
    if isinstance(value, (list, tuple)) and (origin in (list, tuple, typing.Sequence)):
        args = typing.get_args(annotation)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            items = [as_declared(v, a) for v, a in zip(value, args)]
        else:
            items = [as_declared(v, args[0] if args else Any) for v in value]
        return type(value)(items)
    return value


def representable(value: Any) -> bool:
    """A value a recipe could spell (and a run's ``recipe.toml`` records): a string, number or
    bool, a list of them, or a table of them by name; not ``None`` or an object."""
    if isinstance(value, (list, tuple)):
        return all(representable(v) for v in value)
    if isinstance(value, dict):  # left out, a rerun took whatever default the plugin had by then
        return all(isinstance(k, str) and representable(v) for k, v in value.items())
    return isinstance(value, (str, int, float, bool))


def changed_keys(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The keys whose values differ between two tables (one only one of them has included), in
    the order they first appear: what a resume changed in a task's options, say."""
    return [key for key in dict.fromkeys([*before, *after]) if before.get(key) != after.get(key)]


def _shortened_repr() -> reprlib.Repr:
    short = reprlib.Repr()
    short.maxlist = short.maxtuple = short.maxdict = 8
    short.maxlevel = 4
    short.maxstring = short.maxother = 1000
    return short


#: Long lists and tables as ``[0, 1, 2, ...]``: a message stays one readable line.
_SHORT = _shortened_repr()


def format_value(value: Any) -> str:
    """A value as the recipe spells it (strings quoted, ``true``/``false``), for messages; a
    long list or table is cut short (``[0, 1, 2, 3, 4, 5, 6, 7, ...]``)."""
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, dict)):
        return _SHORT.repr(value)
    return str(value)


def _union_args(annotation: Any) -> tuple | None:
    origin = typing.get_origin(annotation)
    if origin is Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        return typing.get_args(annotation)
    return None


def matches_type(value: Any, annotation: Any) -> bool:
    """Whether a TOML value fits a Python annotation (int, float, str, bool, Literal, list...)."""
    if annotation is Any or annotation is object:
        return True
    if annotation is None or annotation is type(None):
        return value is None
    union = _union_args(annotation)
    if union is not None:
        return any(matches_type(value, arg) for arg in union)
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return any(value == choice and type(value) is type(choice) for choice in typing.get_args(annotation))
    if origin in (list, tuple, typing.Sequence) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = typing.get_args(annotation)
        if not args or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
            item = args[0] if args else Any
            return all(matches_type(v, item) for v in value)
        if origin is tuple:
            return len(args) == len(value) and all(matches_type(v, a) for v, a in zip(value, args))
        return all(matches_type(v, args[0]) for v in value)
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _plural(described: str) -> str:
    """``an integer`` -> ``integers``; ``'a' | 'b'`` and ``[...]`` stay as they are."""
    for article in ("an ", "a "):
        if described.startswith(article) and " " not in described[len(article):]:
            return described[len(article):] + "s"
    return described if described != "true or false" else "true/false values"


def describe_type(annotation: Any) -> str:
    """A short, user-facing name for an annotation: ``int``, ``'batch' | 'instance'``..."""
    if annotation is Any:
        return "any value"
    if annotation is None or annotation is type(None):
        return "nothing"
    union = _union_args(annotation)
    if union is not None:
        return " or ".join(describe_type(a) for a in union if a is not type(None))
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " | ".join(format_value(c) for c in typing.get_args(annotation))
    if origin in (list, tuple) or annotation in (list, tuple):
        args = typing.get_args(annotation)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return "[" + ", ".join(describe_type(a) for a in args) + "]"
        return f"a list of {_plural(describe_type(args[0]))}" if args else "a list"
    if isinstance(annotation, type):
        return {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}.get(
            annotation.__name__, annotation.__name__
        )
    return str(annotation)
