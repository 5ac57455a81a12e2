"""Host addresses: parsing `user@host[:port]` lists and discovering Auto Scaling Group members."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

# Used with fullmatch and re.ASCII: `$` would let a trailing newline through, and without ASCII
# other scripts' letters would pass.
_USER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}", re.ASCII)
_HOSTNAME_RE = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*",
    re.ASCII,
)


@dataclass(frozen=True)
class Host:
    """One target host as the operator named it. user/port None mean 'ask ~/.ssh/config, then defaults'."""

    hostname: str
    user: str | None = None
    port: int | None = None

    @property
    def label(self) -> str:
        text = self.hostname if ":" not in self.hostname else f"[{self.hostname}]"
        if self.user:
            text = f"{self.user}@{text}"
        if self.port:
            text = f"{text}:{self.port}"
        return text

    def __str__(self) -> str:
        return self.label


def parse_host(spec: str) -> Host:
    """Parse `[user@]host[:port]` (IPv6 as `[addr]:port`). Raises ValueError with a reason."""
    text = spec.strip()
    if not text:
        raise ValueError("empty host")
    user: str | None = None
    if "@" in text:
        user, text = text.rsplit("@", 1)
        if not _USER_RE.fullmatch(user):
            raise ValueError(f"bad user name {user!r}")
    port: int | None = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError("unclosed '[' in IPv6 address")
        hostname, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"unexpected {rest!r} after address")
            port = _parse_port(rest[1:])
        try:
            ipaddress.IPv6Address(hostname)
        except ValueError:
            raise ValueError(f"bad IPv6 address {hostname!r}") from None
        return Host(hostname=hostname, user=user, port=port)
    if text.count(":") == 1:
        text, port_text = text.split(":")
        port = _parse_port(port_text)
    elif text.count(":") > 1:
        raise ValueError("IPv6 addresses must be written as [addr] or [addr]:port")
    if not _HOSTNAME_RE.fullmatch(text):
        raise ValueError(f"bad host name {text!r}")
    return Host(hostname=text, user=user, port=port)


def _parse_port(text: str) -> int:
    # str.isdigit() would take '¹' and then int() would raise; only ASCII digits are a port.
    if not re.fullmatch(r"[0-9]{1,5}", text, re.ASCII) or not 1 <= int(text) <= 65535:
        raise ValueError(f"bad port {text!r} (1-65535)")
    return int(text)


def parse_host_list(value: str) -> list[Host]:
    """A comma-separated list, in deploy order. Duplicates are refused.

    `h1`, `h1:22` and `u@h1` are one machine (one lock, one app directory): listing it twice would
    make a deploy wait for its own lock, so the same host name and port (22 when unset) is a duplicate.
    """
    hosts: list[Host] = []
    seen: dict[tuple[str, int], Host] = {}
    for part in value.split(","):
        if not part.strip():
            continue
        host = parse_host(part)
        same = (host.hostname.lower(), host.port or 22)
        if same in seen:
            first = seen[same]
            also = "" if first.label == host.label else f" (as {first.label} and {host.label})"
            raise ValueError(f"host {host.hostname} listed twice{also}")
        seen[same] = host
        hosts.append(host)
    if not hosts:
        raise ValueError("no host given")
    return hosts


def discover_asg(name: str, region: str, address: str, user: str) -> tuple[list[Host], list[str]]:
    """The InService instances of an Auto Scaling Group, as hosts; plus notes on what was skipped.

    Uses boto3's own credential chain and endpoint settings (AWS_ENDPOINT_URL works).
    """
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from ghdeploy.aws.errors import translate_aws_error
    from ghdeploy.errors import ConfigError

    notes: list[str] = []
    try:
        autoscaling = boto3.client("autoscaling", region_name=region)
        groups = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
        if not groups:
            raise ConfigError(
                f"ASG_NAME={name!r}: no such Auto Scaling Group in {region}", "check ASG_NAME and AWS_REGION"
            )
        in_service: list[str] = []
        for instance in sorted(groups[0].get("Instances", []), key=lambda i: i["InstanceId"]):
            if instance.get("LifecycleState") == "InService":
                in_service.append(instance["InstanceId"])
            else:
                notes.append(f"skipped {instance['InstanceId']}: {instance.get('LifecycleState')}")
        addresses: dict[str, str | None] = {}
        if in_service:
            ec2 = boto3.client("ec2", region_name=region)
            for reservation in ec2.describe_instances(InstanceIds=in_service)["Reservations"]:
                for inst in reservation["Instances"]:
                    if address == "public":
                        addresses[inst["InstanceId"]] = inst.get("PublicIpAddress")
                    else:
                        addresses[inst["InstanceId"]] = inst.get("PrivateIpAddress")
    except (BotoCoreError, ClientError) as exc:
        raise translate_aws_error(exc, f"Auto Scaling Group {name}") from None
    hosts: list[Host] = []
    for instance_id in in_service:
        ip = addresses.get(instance_id)
        if not ip:
            notes.append(f"skipped {instance_id}: no {address} address")
            continue
        hosts.append(Host(hostname=ip, user=user))
    return hosts, notes


def narrow(hosts: list[Host], wanted: list[str]) -> list[Host]:
    """Keep the hosts named by --host (by label or bare host name), in fleet order."""
    if not wanted:
        return hosts
    chosen: list[Host] = []
    unknown: list[str] = []
    for name in wanted:
        match = [h for h in hosts if name in (h.label, h.hostname)]
        if not match:
            unknown.append(name)
        chosen += [h for h in match if h not in chosen]
    if unknown:
        from ghdeploy.errors import ConfigError

        raise ConfigError(
            f"--host {', '.join(unknown)}: not among the configured hosts ({', '.join(h.label for h in hosts)})",
            "name a host from EC2_HOST (or the Auto Scaling Group)",
        )
    return [h for h in hosts if h in chosen]
