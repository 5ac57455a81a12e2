"""The declaration of one config key (`Key`) and the three ways to declare one.

A Key is a descriptor: declared in the body of `ghdeploy.config_schema.Config`, `config.gh_api_port`
returns the parsed, typed value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, Literal, TypedDict, TypeVar, Unpack, overload

if TYPE_CHECKING:
    from ghdeploy.config_schema import Config

T = TypeVar("T")

# Every declared key (config_schema.Config), so `config.text("AGENT_INTERVAL")` type-checks.
KeyName = Literal[
    "ECR_REGISTRY",
    "ECR_REGISTRY_OVERRIDE",
    "ECR_REPOSITORY",
    "AWS_REGION",
    "EC2_HOST",
    "ASG_NAME",
    "SSH_ADDRESS",
    "SSH_USER",
    "EC2_KEY",
    "SSH_KNOWN_HOSTS",
    "SSH_CONFIG",
    "GHOSTHANDS_DIR",
    "GH_ENVIRONMENT",
    "IMAGE_TAG",
    "GH_API_PORT",
    "GH_WORKER_PORT",
    "HEALTH_TIMEOUT",
    "DRAIN_TIMEOUT",
    "STOP_TIMEOUT",
    "AGENT_TAG",
    "AGENT_INTERVAL",
    "AGENT_FLEET_TABLE",
    "AGENT_FLEET_BATCH",
    "DEPLOY_WEBHOOK_SECRET",
    "DEPLOY_API_TOKEN",
    "DATABASE_URL",
    "DEPLOY_CALLBACK_URL",
    "WEBHOOK_MAX_AGE",
    "RETAIN_RELEASES",
    "DISK_RESERVE_MB",
    "PULL_PARALLEL",
    "GH_PLATFORM",
]


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


class Options(TypedDict, Generic[T], total=False):
    """What any key may add: `secret=True` (its value is never printed), and a `check` of the
    parsed value (given whether it was set explicitly) that returns why it is refused, or None."""

    secret: bool
    check: Callable[[T, bool], str | None] | None


class SettingOptions(Options[T], total=False):
    process_only: bool  # read only from the process environment or a flag (see Key)


def setting(
    name: str,
    parse: Callable[[str], T],
    default: str,
    help: str,
    commands: Iterable[str],
    **options: Unpack[SettingOptions[T]],
) -> Key[T]:
    """A key with a default: always has a value."""
    return Key(name, parse, default, help, commands, **options)


def required(
    name: str, parse: Callable[[str], T], help: str, commands: Iterable[str], **options: Unpack[Options[T]]
) -> Key[T]:
    """A key the listed commands cannot run without."""
    return Key(name, parse, None, help, commands, required=True, **options)


def optional(
    name: str, parse: Callable[[str], T], help: str, commands: Iterable[str], **options: Unpack[Options[T]]
) -> Key[T | None]:
    """A key that may stay unset (None)."""
    return Key(name, parse, None, help, commands, **options)
