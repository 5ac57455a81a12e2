"""Auto Scaling Group discovery through boto3 against moto's server (the testbed's AWS_ENDPOINT_URL).

The instances are given the testbed hosts' addresses, so `status` really connects to them;
instances with made-up public addresses are only listed (`ghdeploy hosts`), never contacted.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
import pytest

from tests.integration.conftest import Cli

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import InstanceNetworkInterfaceSpecificationTypeDef


@dataclass(frozen=True)
class Aws:
    """Clients of the testbed's moto server."""

    region: str
    endpoint: str

    def ec2(self) -> EC2Client:
        return boto3.client(
            "ec2",
            region_name=self.region,
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def autoscaling(self) -> AutoScalingClient:
        return boto3.client(
            "autoscaling",
            region_name=self.region,
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@pytest.fixture
def aws(testbed_env: dict[str, str]) -> Aws:
    return Aws(region=testbed_env["AWS_REGION"], endpoint=testbed_env["AWS_ENDPOINT_URL"])


@pytest.fixture
def asg(aws: Aws) -> dict[str, str]:
    """An ASG with h2 and h3 InService, one instance in Standby, one with a public address."""
    ec2, autoscaling = aws.ec2(), aws.autoscaling()
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.77.0.0/16")["Subnet"]["SubnetId"]
    image = ec2.describe_images()["Images"][0]["ImageId"]

    def instance(ip: str, public: bool = False) -> str:
        iface: InstanceNetworkInterfaceSpecificationTypeDef = {
            "DeviceIndex": 0,
            "SubnetId": subnet,
            "PrivateIpAddress": ip,
            "AssociatePublicIpAddress": public,
        }
        return ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, NetworkInterfaces=[iface])["Instances"][0][
            "InstanceId"
        ]

    ids = {"h2": instance("10.77.2.2"), "h3": instance("10.77.3.2"), "standby": instance("10.77.9.9")}
    ids["public"] = instance("10.77.9.10", public=True)
    name = f"ghosthands-{uuid.uuid4().hex[:8]}"
    autoscaling.create_launch_configuration(LaunchConfigurationName=name, ImageId=image, InstanceType="t3.micro")
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchConfigurationName=name,
        MinSize=0,
        MaxSize=10,
        DesiredCapacity=0,
        VPCZoneIdentifier=subnet,
    )
    autoscaling.attach_instances(AutoScalingGroupName=name, InstanceIds=list(ids.values()))
    autoscaling.enter_standby(
        AutoScalingGroupName=name, InstanceIds=[ids["standby"]], ShouldDecrementDesiredCapacity=True
    )
    states = {
        i["InstanceId"]: i["LifecycleState"]
        for i in autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0][
            "Instances"
        ]
    }
    assert states[ids["standby"]] == "Standby" and states[ids["h2"]] == "InService"
    return {"name": name, **ids}


def test_private_addresses_of_in_service_instances_are_the_hosts(
    cli_factory: Callable[..., Cli], asg: dict[str, str], clean_hosts: Callable[..., None]
) -> None:
    clean_hosts("h2", "h3")
    cli = cli_factory(ASG_NAME=asg["name"], SSH_USER="root")
    doc = cli.json("hosts")
    assert doc["source"] == f"ASG {asg['name']}"
    found = {h["host"] for h in doc["hosts"]}
    assert found == {"root@10.77.2.2", "root@10.77.3.2", "root@10.77.9.10"}
    assert any(asg["standby"] in note and "Standby" in note for note in doc["skipped"])

    # The real path: discovery, then SSH to what was found (narrowed to the testbed hosts).
    status = cli("--json", "status", "--host", "10.77.2.2", "--host", "10.77.3.2")
    rows = json.loads(status.stdout)["hosts"]
    # Deploy order is instance-ID order, whatever the addresses.
    by_id = {asg["h2"]: "root@10.77.2.2", asg["h3"]: "root@10.77.3.2"}
    assert [r["host"] for r in rows] == [by_id[i] for i in sorted(by_id)]
    assert all(r["error"] is None for r in rows), rows
    assert f"ASG {asg['name']}: 3 host(s)" in status.stderr


def test_public_mode_skips_instances_without_a_public_address(
    cli_factory: Callable[..., Cli], asg: dict[str, str]
) -> None:
    cli = cli_factory(ASG_NAME=asg["name"], SSH_USER="root", SSH_ADDRESS="public")
    doc = cli.json("hosts")
    assert len(doc["hosts"]) == 1
    assert doc["hosts"][0]["hostname"] not in ("10.77.9.10", "10.77.2.2")
    skipped = " ".join(doc["skipped"])
    assert asg["h2"] in skipped and asg["h3"] in skipped and "no public address" in skipped


def test_unknown_group_and_conflicting_settings_exit_2(cli_factory: Callable[..., Cli]) -> None:
    cli = cli_factory(ASG_NAME="no-such-group", SSH_USER="root")
    proc = cli("hosts")
    assert proc.returncode == 2 and "no such Auto Scaling Group" in proc.stderr
    both = cli("hosts", extra_env={"EC2_HOST": "root@10.77.2.2"})
    assert both.returncode == 2 and "choose one" in both.stderr
