"""Is a newly created container what it was created to be? (Its spec against its `docker inspect`.)"""

from __future__ import annotations

from typing import Any

from ghdeploy.container_spec.capture import config_options
from ghdeploy.container_spec.host_config import HOST_FLAGS, host_options
from ghdeploy.container_spec.spec import ContainerSpec

# Every option capture.config_options() may give.
CONFIG_FLAGS = (
    "--hostname=",
    "--domainname=",
    "--user=",
    "--workdir=",
    "--stop-signal=",
    "--stop-timeout=",
    "--tty",
    "--interactive",
    "--mac-address=",
    "--expose=",
    "--no-healthcheck",
    "--health-",
    "--entrypoint=",
)


def _image_has(option: str, image: dict[str, Any]) -> bool:
    """A config option the new image itself already sets (so the container shows no difference)."""
    image_config = image.get("Config") or {}
    flag, _, value = option.partition("=")
    field_of = {"--user": "User", "--workdir": "WorkingDir", "--stop-signal": "StopSignal"}
    if flag in field_of:
        return bool(image_config.get(field_of[flag]) == value)
    if flag == "--expose":
        return value in (image_config.get("ExposedPorts") or {})
    if flag.startswith("--health") or flag == "--no-healthcheck":
        return True  # compared as a whole: the healthcheck equals the new image's (nothing to carry)
    return flag == "--entrypoint"  # the entrypoint is compared through the whole command


def _option_differences(intended: ContainerSpec, container: dict[str, Any], image: dict[str, Any]) -> list[str]:
    found: list[str] = []
    h_opts, networks, _ = host_options(container)
    intended_host = [o for o in intended.options if not o.startswith("--label=")]
    missing = [o for o in intended_host if o.startswith(HOST_FLAGS) and o not in h_opts]
    extra = [o for o in h_opts if o not in intended.options]
    if missing or extra:
        found.append(f"options differ (missing {missing}, unexpected {extra})")
    if networks != intended.networks:
        found.append(f"networks differ ({networks} != {intended.networks})")
    c_opts, _ = config_options(container, image)
    for option in intended.options:
        if option.startswith(CONFIG_FLAGS) and option not in c_opts and not _image_has(option, image):
            found.append(f"{option.split('=', 1)[0]} not carried over")
    return found


def _env_differences(intended: ContainerSpec, container: dict[str, Any], image: dict[str, Any]) -> list[str]:
    """Names only: the values may be secrets."""
    found: list[str] = []
    env = (container.get("Config") or {}).get("Env") or []
    image_env = set((image.get("Config") or {}).get("Env") or [])
    missing_env = sorted(e.split("=", 1)[0] for e in set(intended.env) - set(env))
    if missing_env:
        found.append("environment entries missing: " + ", ".join(missing_env))
    unexpected = sorted(e.split("=", 1)[0] for e in env if e not in image_env and e not in intended.env)
    if unexpected:
        found.append("unexpected environment entries: " + ", ".join(unexpected))
    return found


def _command_differences(intended: ContainerSpec, container: dict[str, Any], image: dict[str, Any]) -> list[str]:
    if intended.entrypoint is None and intended.cmd is None:
        return []
    config = container.get("Config") or {}
    argv = (config.get("Entrypoint") or []) + (config.get("Cmd") or [])
    image_config = image.get("Config") or {}
    expected = (intended.entrypoint if intended.entrypoint is not None else image_config.get("Entrypoint") or []) + (
        intended.cmd if intended.cmd is not None else image_config.get("Cmd") or []
    )
    return [f"command differs ({argv} != {expected})"] if argv != expected else []


def differences(intended: ContainerSpec, container: dict[str, Any], image: dict[str, Any]) -> list[str]:
    """How a newly created container (on `image`) differs from what it was created to be; [] if not at all.

    HostConfig and networks must match exactly; the container's own environment, labels and
    command must be there, and anything else in them must come from the new image.
    """
    found = _option_differences(intended, container, image)
    found += _env_differences(intended, container, image)
    labels = (container.get("Config") or {}).get("Labels") or {}
    if any(labels.get(k) != v for k, v in intended.labels.items()):
        found.append("labels differ")
    return found + _command_differences(intended, container, image)
