"""The agents' fleet table in DynamoDB: switch leases and digests that failed somewhere.

One table, one string key `pk`:
- `lease#N` (N < AGENT_FLEET_BATCH): the host switching in slot N, until `expires` (epoch s).
  Taken with a conditional put (free, expired, or already ours), renewed while the deploy runs,
  deleted at the end only if the token is still ours. A host that dies mid-switch stops renewing,
  so its slot frees itself after the lease time instead of blocking the fleet forever.
- `failed#<digest>`: a digest whose deploy was rolled back on some host; no other host tries it.

boto3/botocore are imported inside the functions (`ghdeploy --help` must not load them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ghdeploy.errors import ConfigError, GhdeployError, RegistryError

LEASE_PREFIX = "lease#"
FAILED_PREFIX = "failed#"
# DynamoDB's answer when a write's condition does not hold (the slot is someone else's).
CONDITION_FAILED = "ConditionalCheckFailedException"


@dataclass(frozen=True)
class Lease:
    slot: int
    holder: str
    token: str
    digest: str
    expires: float


class FleetTableError(GhdeployError):
    """The fleet table could not be read or written."""


def _translate(exc: Exception, table: str, what: str) -> GhdeployError:
    from botocore.exceptions import ClientError

    from ghdeploy.aws.errors import translate_aws_error

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            return ConfigError(
                f"fleet table {table!r} does not exist",
                "create it with `ghdeploy agent init-table`, or unset AGENT_FLEET_TABLE",
            )
        if code in ("AccessDeniedException", "AccessDenied"):
            message = exc.response.get("Error", {}).get("Message", "")
            return FleetTableError(
                f"fleet table {table}: {what}: access denied ({message})",
                "give the instance role dynamodb:GetItem, PutItem, DeleteItem, Scan on the table (README: agent)",
            )
    translated: RegistryError = translate_aws_error(exc, f"fleet table {table}: {what}")
    return FleetTableError(translated.message, translated.hint)


class FleetTable:
    def __init__(self, name: str, region: str, client: Any = None, now: Callable[[], float] = time.time) -> None:
        self.name = name
        self.region = region
        self._client = client
        self._now = now

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("dynamodb", region_name=self.region)
        return self._client

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn()
        except (BotoCoreError, ClientError) as exc:
            raise _translate(exc, self.name, what) from None

    def _done(self, what: str, operation: str, unless: str, **params: Any) -> bool:
        """Send a write (`put_item`, ...); False when DynamoDB refused it with the error code `unless`
        (a condition not met, a table already there), any other error translated."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            getattr(self.client, operation)(**params)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == unless:
                return False
            raise _translate(exc, self.name, what) from None
        except BotoCoreError as exc:
            raise _translate(exc, self.name, what) from None
        return True

    # --- setup --------------------------------------------------------------------------------

    def create_or_exists(self) -> bool:
        """True if created now, False if it was already there."""
        created = self._done(
            "create",
            "create_table",
            unless="ResourceInUseException",
            TableName=self.name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        self._wait_active()
        return created

    def _wait_active(self, wait: float = 120.0) -> None:
        deadline = time.monotonic() + wait
        while True:
            table = self._call("describe", lambda: self.client.describe_table(TableName=self.name))["Table"]
            if table.get("TableStatus") == "ACTIVE":
                return
            if time.monotonic() > deadline:
                raise FleetTableError(
                    f"fleet table {self.name} is still {table.get('TableStatus')} after {wait:g}s", "try again later"
                )
            time.sleep(1.0)

    # --- failed digests -----------------------------------------------------------------------

    def failed(self, digest: str) -> dict[str, Any] | None:
        """Where and when `digest` failed, if it did anywhere."""
        item = self._call(
            "read",
            lambda: self.client.get_item(
                TableName=self.name, Key={"pk": {"S": FAILED_PREFIX + digest}}, ConsistentRead=True
            ),
        ).get("Item")
        return _plain(item) if item else None

    def mark_failed(self, digest: str, host: str, reason: str, when: str) -> None:
        item = {
            "pk": {"S": FAILED_PREFIX + digest},
            "digest": {"S": digest},
            "host": {"S": host},
            "reason": {"S": reason[:500] or "-"},
            "time": {"S": when},
        }
        self._call("mark failed", lambda: self.client.put_item(TableName=self.name, Item=item))

    # --- leases -------------------------------------------------------------------------------

    def acquire(self, holder: str, token: str, digest: str, batch: int, ttl: float) -> Lease | None:
        """Take a free (or expired, or already our host's) slot among `batch`; None if all are busy."""
        for slot in range(max(1, batch)):
            now = self._now()
            expires = now + ttl
            taken = self._done(
                "take a lease",
                "put_item",
                unless=CONDITION_FAILED,
                TableName=self.name,
                Item={
                    "pk": {"S": f"{LEASE_PREFIX}{slot}"},
                    "holder": {"S": holder},
                    "token": {"S": token},
                    "digest": {"S": digest},
                    "expires": {"N": f"{expires:.3f}"},
                },
                # A restarted agent on the same host may take over its own dead process's slot.
                ConditionExpression="attribute_not_exists(pk) OR #e < :now OR #h = :holder",
                ExpressionAttributeNames={"#e": "expires", "#h": "holder"},
                ExpressionAttributeValues={":now": {"N": f"{now:.3f}"}, ":holder": {"S": holder}},
            )
            if taken:
                return Lease(slot=slot, holder=holder, token=token, digest=digest, expires=expires)
        return None

    def renew(self, lease: Lease, ttl: float) -> Lease | None:
        """Push the expiry out; None if the lease is no longer ours (it expired and was taken)."""
        expires = self._now() + ttl
        renewed = self._if_ours(
            "renew the lease",
            "update_item",
            lease,
            UpdateExpression="SET #e = :e",
            names={"#e": "expires"},
            values={":e": {"N": f"{expires:.3f}"}},
        )
        if not renewed:
            return None
        return Lease(slot=lease.slot, holder=lease.holder, token=lease.token, digest=lease.digest, expires=expires)

    def release(self, lease: Lease) -> bool:
        """Free our slot; False if it was not ours any more."""
        return self._if_ours("release the lease", "delete_item", lease)

    def _if_ours(
        self,
        what: str,
        operation: str,
        lease: Lease,
        names: dict[str, str] | None = None,
        values: dict[str, Any] | None = None,
        **params: Any,
    ) -> bool:
        """A write to our lease's item on condition that the lease is still ours (its token)."""
        return self._done(
            what,
            operation,
            unless=CONDITION_FAILED,
            TableName=self.name,
            Key={"pk": {"S": f"{LEASE_PREFIX}{lease.slot}"}},
            ConditionExpression="#t = :t",
            ExpressionAttributeNames={"#t": "token", **(names or {})},
            ExpressionAttributeValues={":t": {"S": lease.token}, **(values or {})},
            **params,
        )

    def holders(self, batch: int) -> list[dict[str, Any]]:
        """The live leases among the first `batch` slots (for 'waiting for ...' messages)."""
        keys = [{"pk": {"S": f"{LEASE_PREFIX}{slot}"}} for slot in range(max(1, batch))]
        response = self._call(
            "read leases",
            lambda: self.client.batch_get_item(RequestItems={self.name: {"Keys": keys, "ConsistentRead": True}}),
        )
        now = self._now()
        items = [_plain(i) for i in (response.get("Responses") or {}).get(self.name, [])]
        return sorted((i for i in items if float(i.get("expires", 0)) >= now), key=lambda i: str(i.get("pk", "")))


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item ({'S': ...}/{'N': ...}) as plain values."""
    out: dict[str, Any] = {}
    for key, value in item.items():
        if "S" in value:
            out[key] = value["S"]
        elif "N" in value:
            out[key] = float(value["N"])
    return out
