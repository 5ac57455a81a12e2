"""A container's spec from its `docker inspect`: HostConfig (host_config.py), then what its Config
sets beyond its image's own (user, workdir, healthcheck, entrypoint, labels, environment)."""

from __future__ import annotations

from typing import Any

from ghdeploy.container_spec.host_config import host_options
from ghdeploy.container_spec.spec import ContainerSpec, own_env


def _duration(ns: int) -> str:
    return f"{int(ns)}ns"


def _differs(container_value: Any, image_value: Any) -> bool:
    return bool(container_value) and container_value != image_value


def _healthcheck_options(health: dict[str, Any], image_health: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The container's own healthcheck (none when it is the image's), and problems."""
    if not health or health == image_health:
        return [], []
    test = health.get("Test") or []
    if test[:1] == ["NONE"]:
        return ["--no-healthcheck"], []
    opts: list[str] = []
    problems: list[str] = []
    if test[:1] == ["CMD-SHELL"] and len(test) == 2:
        opts.append(f"--health-cmd={test[1]}")
    elif test and test != image_health.get("Test"):
        problems.append(
            f"Config.Healthcheck.Test {test[:1]} form cannot be carried over (docker create takes only a shell command)"
        )
    for key, flag in (
        ("Interval", "--health-interval"),
        ("Timeout", "--health-timeout"),
        ("StartPeriod", "--health-start-period"),
        ("StartInterval", "--health-start-interval"),
    ):
        if health.get(key):
            opts.append(f"{flag}={_duration(health[key])}")
    if health.get("Retries"):
        opts.append(f"--health-retries={health['Retries']}")
    return opts, problems


def config_options(container: dict[str, Any], image: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The options from Config that differ from the image's own (user, workdir, healthcheck, ...)."""
    config = container.get("Config") or {}
    hc = container.get("HostConfig") or {}
    image_config = image.get("Config") or {}
    opts: list[str] = []
    problems: list[str] = []
    mode = hc.get("NetworkMode") or "default"
    shares_uts = mode == "host" or mode.startswith("container:") or hc.get("UTSMode") == "host"
    short_id = str(container.get("Id") or "")[:12]
    if config.get("Hostname") and config["Hostname"] != short_id and not shares_uts:
        opts.append(f"--hostname={config['Hostname']}")
    if config.get("Domainname"):
        opts.append(f"--domainname={config['Domainname']}")
    for key, flag in (("User", "--user"), ("WorkingDir", "--workdir"), ("StopSignal", "--stop-signal")):
        if _differs(config.get(key), image_config.get(key)):
            opts.append(f"{flag}={config[key]}")
    if config.get("StopTimeout") is not None:
        opts.append(f"--stop-timeout={config['StopTimeout']}")
    if config.get("Tty"):
        opts.append("--tty")
    if config.get("OpenStdin"):
        opts.append("--interactive")
    if config.get("MacAddress"):
        opts.append(f"--mac-address={config['MacAddress']}")
    if config.get("NetworkDisabled"):
        problems.append("Config.NetworkDisabled cannot be carried over by docker create")
    published = set((hc.get("PortBindings") or {}).keys())
    image_ports = set((image_config.get("ExposedPorts") or {}).keys())
    for port in sorted(set((config.get("ExposedPorts") or {}).keys()) - image_ports - published):
        opts.append(f"--expose={port}")
    health_opts, health_problems = _healthcheck_options(
        config.get("Healthcheck") or {}, image_config.get("Healthcheck") or {}
    )
    return [*opts, *health_opts], [*problems, *health_problems]


def own_labels(container: dict[str, Any], image: dict[str, Any]) -> dict[str, str]:
    image_labels = (image.get("Config") or {}).get("Labels") or {}
    labels = (container.get("Config") or {}).get("Labels") or {}
    return {k: v for k, v in labels.items() if image_labels.get(k) != v}


def from_inspect(container: dict[str, Any], image: dict[str, Any]) -> ContainerSpec:
    """The spec of a container from its `docker inspect` and its image's `docker image inspect`."""
    config = container.get("Config") or {}
    image_config = image.get("Config") or {}
    labels = own_labels(container, image)
    env, env_problems = own_env(container, image)
    h_opts, networks, h_problems = host_options(container)
    c_opts, c_problems = config_options(container, image)
    label_opts = [f"--label={k}={v}" for k, v in sorted(labels.items())]
    entrypoint = config.get("Entrypoint")
    own_entrypoint = entrypoint != image_config.get("Entrypoint")
    cmd = config.get("Cmd")
    if own_entrypoint:
        c_opts.append(f"--entrypoint={entrypoint[0] if entrypoint else ''}")
    name = str(container.get("Name") or "").lstrip("/")
    return ContainerSpec(
        name=name,
        options=[*label_opts, *h_opts, *c_opts],
        env=env,
        entrypoint=entrypoint if own_entrypoint else None,
        # `--entrypoint` clears the image's CMD, so with our own entrypoint the command is always passed.
        cmd=cmd if own_entrypoint or cmd != image_config.get("Cmd") else None,
        networks=networks,
        labels=labels,
        problems=[f"{name}: {p}" for p in (*env_problems, *h_problems, *c_problems)],
    )
