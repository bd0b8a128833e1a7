"""A name → constructor registry, the plugin surface of femurseg.

One :class:`Registry` instance exists per kind of component and lives in the
subpackage that owns that kind (networks in :mod:`femurseg.models.nets`, losses in
:mod:`femurseg.models.losses`). Registries are filled by explicit imports of the
modules that define the components; third-party packages add components through
a Python entry-point group (``femurseg.nets`` for networks), which is read once,
on first lookup.

A component declares what it needs when it registers: ``register(name, metadata=...)``
stores a metadata object beside the constructor (for networks a
:class:`femurseg.models.registry.NetSpec`, as timm keeps a ``default_cfg`` beside each
model), and :meth:`Registry.metadata` returns it, so that callers read a declaration
instead of inspecting signatures or parameter names.

Examples
--------
>>> from femurseg.registry import Registry
>>> blocks = Registry("blocks")
>>> @blocks.register("double")
... def double(x: int) -> int:
...     return 2 * x
>>> blocks.create("double", x=3)
6
>>> blocks.get("doubel")
Traceback (most recent call last):
...
KeyError: "unknown blocks 'doubel'; did you mean 'double'? Valid names: double"
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

T = TypeVar("T", bound=Callable[..., Any])

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

__all__ = ["Registry", "import_from_path"]


def import_from_path(path: str) -> Any:
    """Import ``package.module.Name`` and return ``Name``.

    Parameters
    ----------
    path
        Dotted import path whose last part is an attribute of the module.

    Raises
    ------
    ImportError
        If the module cannot be imported or has no such attribute.
    """
    module_name, _, attribute = path.rpartition(".")
    if not module_name:
        raise ImportError(f"{path!r} is not a dotted import path (package.module.Name)")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attribute)
    except AttributeError as error:
        raise ImportError(f"module {module_name!r} has no attribute {attribute!r}") from error


class Registry(Generic[T]):
    """Map lower_snake names to constructors.

    Parameters
    ----------
    kind
        What the registry holds, used in error messages (``"net"``, ``"loss"``).
    entry_point_group
        Optional entry-point group scanned once, on first lookup, for third-party
        components. Each entry point's name is the registry name and its value the
        constructor (``mypkg.nets:TinyNet``).
    metadata_type
        Optional class of the metadata that components declare at registration;
        :meth:`metadata` returns ``metadata_type()`` (the defaults) for a component
        that declared none, and :meth:`register` refuses metadata of another type.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None,
                 metadata_type: type | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.metadata_type = metadata_type
        self._items: dict[str, T] = {}
        self._metadata: dict[str, Any] = {}
        self._plugins_loaded = entry_point_group is None

    def register(self, name: str, obj: T | None = None, *, metadata: Any = None) -> Any:
        """Register ``obj`` under ``name``; usable as a decorator.

        Parameters
        ----------
        name
            lower_snake registry name.
        obj
            The constructor; omit it to use ``register`` as a decorator.
        metadata
            What the component declares about itself (an instance of the registry's
            ``metadata_type``); ``None`` keeps what was declared before for this name,
            else the defaults.

        Raises
        ------
        ValueError
            If the name is not lower_snake or is already taken.
        TypeError
            If ``metadata`` is not an instance of the registry's ``metadata_type``.
        """
        if not _NAME.match(name):
            raise ValueError(f"{self.kind} name {name!r} must be lower_snake (e.g. 'unet3d')")
        if metadata is not None and (self.metadata_type is None or not isinstance(metadata, self.metadata_type)):
            expected = self.metadata_type.__name__ if self.metadata_type is not None else "no metadata"
            raise TypeError(f"{self.kind} {name!r}: metadata must be {expected}, got {type(metadata).__name__}")

        def decorator(item: T) -> T:
            if name in self._items and self._items[name] is not item:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered "
                    f"(by {_qualified_name(self._items[name])})"
                )
            self._items[name] = item
            if metadata is not None:
                self._metadata[name] = metadata
            return item

        return decorator(obj) if obj is not None else decorator

    def get(self, name: str) -> T:
        """Return the constructor registered as ``name``.

        A dotted path (``mypkg.nets.MyNet``) is imported instead of looked up, so a
        class that was never registered can still be used.

        Raises
        ------
        KeyError
            If the name is unknown; the message lists the valid names and the
            nearest match.
        """
        if "." in name:
            return import_from_path(name)
        return self.get_registered(name)

    def get_registered(self, name: str) -> T:
        """Return the constructor registered as ``name``, never importing a dotted path.

        Use this for names read from files (checkpoints, configs stored inside them):
        only built-ins and installed entry-point plugins can be reached, so a crafted
        file cannot make femurseg import or run arbitrary code (``net = "os.system"``).

        Raises
        ------
        KeyError
            If the name is not registered (a dotted path is never imported).
        """
        if not isinstance(name, str):
            raise KeyError(f"{self.kind} name must be a string, got {type(name).__name__}")
        self._load_plugins()
        if name not in self._items:
            names = sorted(self._items)
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise KeyError(f"unknown {self.kind} {name!r}{hint} Valid names: {', '.join(names)}")
        return self._items[name]

    def create(self, name: str, /, **kwargs: Any) -> Any:
        """Build the component ``name`` with keyword arguments.

        Raises
        ------
        KeyError
            If ``name`` is not registered.
        TypeError
            If ``kwargs`` holds a keyword the component does not take (the message
            names the component and the keywords it does take).
        """
        item = self.get(name)
        try:
            signature = inspect.signature(item)
        except (TypeError, ValueError):  # some builtins have no signature: let the call decide
            return item(**kwargs)
        try:
            signature.bind(**kwargs)
        except TypeError as error:
            taken = [p for p, v in signature.parameters.items() if v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)]
            raise TypeError(f"{self.kind} {name!r} cannot be built with {sorted(kwargs)}: {error}. "
                            f"It takes: {', '.join(taken) or 'no keyword arguments'}") from None
        return item(**kwargs)

    def create_registered(self, name: str, /, **kwargs: Any) -> Any:
        """:meth:`create` for names read from files: registered names only (see :meth:`get_registered`)."""
        self.get_registered(name)
        return self.create(name, **kwargs)

    def metadata(self, name: str) -> Any:
        """What the component ``name`` declared when it was registered.

        A dotted path (an unregistered class) gets the declaration of the same object
        registered under a name, if any. A component that declared nothing gets the
        defaults, ``metadata_type()`` (``None`` for a registry without a metadata type).

        Raises
        ------
        KeyError, ImportError
            As :meth:`get`, if ``name`` is unknown.
        """
        item = self.get(name)
        if name in self._metadata:
            return self._metadata[name]
        for other, registered in self._items.items():
            if registered is item and other in self._metadata:
                return self._metadata[other]
        return self.metadata_type() if self.metadata_type is not None else None

    def names(self) -> list[str]:
        """Sorted registered names, plugins included."""
        self._load_plugins()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for entry_point in entry_points(group=self.entry_point_group):
            try:
                item = entry_point.load()
            except Exception as error:  # a broken plugin must not hide the built-ins
                raise ImportError(
                    f"{self.kind} plugin {entry_point.name!r} ({entry_point.value}) "
                    f"from entry-point group {self.entry_point_group!r} failed to load: {error}"
                ) from error
            self.register(entry_point.name, item)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._items)})"


def _qualified_name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
