"""AWS errors (botocore's) turned into one line with what to do: credentials, SSO, network, access."""

from __future__ import annotations

from ghdeploy.errors import CredentialsError, RegistryError

# ghdeploy needs no aws CLI: boto3 reads a profile, SSO's cached login or environment variables.
CREDENTIALS_HINT = (
    "no aws CLI is needed: set AWS_PROFILE to a profile in ~/.aws/config (or AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY); if you use the aws CLI with SSO, run `aws sso login --profile NAME` and set AWS_PROFILE=NAME"
)


def translate_aws_error(exc: Exception, what: str) -> RegistryError:
    """Turn a botocore exception into one line with what to do."""
    from botocore import exceptions as bx

    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError | bx.ProfileNotFound):
        found = "the AWS profile named by AWS_PROFILE does not exist" if isinstance(exc, bx.ProfileNotFound) else ""
        return CredentialsError(f"{what}: {found or 'no AWS credentials found'}", CREDENTIALS_HINT)
    if isinstance(exc, bx.TokenRetrievalError | bx.UnauthorizedSSOTokenError | bx.SSOTokenLoadError):
        return CredentialsError(
            f"{what}: the AWS SSO session has expired",
            "run `aws sso login --profile NAME` for the profile in AWS_PROFILE, then try again",
        )
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectTimeoutError):
        return RegistryError(
            f"{what}: cannot reach the AWS endpoint ({exc})", "check the network, AWS_REGION and AWS_ENDPOINT_URL"
        )
    if isinstance(exc, bx.ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "")
        if code in ("ExpiredTokenException", "ExpiredToken", "RequestExpired"):
            return CredentialsError(f"{what}: the AWS credentials have expired", f"refresh them; {CREDENTIALS_HINT}")
        if code in (
            "UnrecognizedClientException",
            "InvalidSignatureException",
            "InvalidClientTokenId",
            "SignatureDoesNotMatch",
        ):
            return CredentialsError(
                f"{what}: the AWS credentials were rejected ({code})",
                "check AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and that they belong to AWS_REGION's account)",
            )
        if code in ("AccessDeniedException", "AccessDenied"):
            return RegistryError(
                f"{what}: access denied ({message})", "ask for ECR push/pull rights on this repository"
            )
        return RegistryError(f"{what}: AWS error {code}: {message}")
    if isinstance(exc, bx.BotoCoreError):
        return RegistryError(f"{what}: {exc}")
    raise exc
