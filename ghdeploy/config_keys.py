"""The declaration of one config key (`Key`) and the three ways to declare one.

A Key is a descriptor: declared in the body of `ghdeploy.config.Config`, `config.gh_api_port`
returns the parsed, typed value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

if TYPE_CHECKING:
    from ghdeploy.config import Config

T = TypeVar("T")


class Key(Generic[T]):
    """One configuration key: its grammar (parse), default, the commands that need it, its docs.

    As a class attribute of Config it is a descriptor: `config.gh_api_port` is the parsed value.
    """

    def __init__(
        self,
        name: str,
        parse: Callable[[str], Any],
        default: str | None,
        help: str,
        commands: Iterable[str],
        *,
        required: bool = False,
        secret: bool = False,
        check: Callable[[Any, bool], str | None] | None = None,
        process_only: bool = False,
    ) -> None:
        self.name = name
        self.parse = parse
        self.default = default
        self.help = help
        self.commands = frozenset(commands)
        self.required = required
        self.secret = secret
        self.check = check
        # Read only from the process environment (or a flag): in an env file it is refused, so a
        # committed file cannot switch on what the operator must choose for the session.
        self.process_only = process_only
        self.attr = name.lower()

    def __set_name__(self, owner: type, attr: str) -> None:
        if attr != self.name.lower():
            raise TypeError(f"config key {self.name} must be declared as `{self.name.lower()} = ...`, not {attr}")

    def shown(self, value: str) -> str:
        return "(hidden)" if self.secret else repr(value)

    @overload
    def __get__(self, obj: None, owner: type) -> Key[T]: ...

    @overload
    def __get__(self, obj: Config, owner: type) -> T: ...

    def __get__(self, obj: Config | None, owner: type) -> Key[T] | T:
        if obj is None:
            return self
        return obj._typed(self)

    def __set__(self, obj: Config, value: Any) -> None:
        raise AttributeError(f"config is frozen: {self.name} cannot be changed")


def setting(
    name: str,
    parse: Callable[[str], T],
    default: str,
    help: str,
    commands: Iterable[str],
    *,
    secret: bool = False,
    check: Callable[[T, bool], str | None] | None = None,
    process_only: bool = False,
) -> Key[T]:
    """A key with a default: always has a value."""
    return Key(name, parse, default, help, commands, secret=secret, check=check, process_only=process_only)


def required(
    name: str,
    parse: Callable[[str], T],
    help: str,
    commands: Iterable[str],
    *,
    secret: bool = False,
    check: Callable[[T, bool], str | None] | None = None,
) -> Key[T]:
    """A key the listed commands cannot run without."""
    return Key(name, parse, None, help, commands, required=True, secret=secret, check=check)


def optional(
    name: str,
    parse: Callable[[str], T],
    help: str,
    commands: Iterable[str],
    *,
    secret: bool = False,
    check: Callable[[T, bool], str | None] | None = None,
) -> Key[T | None]:
    """A key that may stay unset (None)."""
    return Key(name, parse, None, help, commands, secret=secret, check=check)
