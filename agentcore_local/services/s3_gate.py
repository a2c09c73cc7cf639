"""The listener's S3 gate: what iam/backup-policy-statement.json lets a session's execution role do,
checked on the request the listener actually forwards (the decoded path, one bucket, only object
keys of a backup's shape, never moto's own API), and the request rebuilt from the parts checked."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from starlette.requests import Request

from .backups import KEY_VERSION, SCOPE_PATTERN


def signed_service(request: Request) -> str | None:
    """The service a request was signed for (SigV4 header or presigned query), None if unsigned."""
    authorization = request.headers.get("authorization", "")
    if authorization.startswith("AWS4-HMAC-SHA256 "):  # the scope as moto reads it: the first credential
        scope = authorization.split(",")[0].split()[1:2]
        parts = scope[0].removeprefix("Credential=").split("/") if scope else []
        return parts[3] if len(parts) == 5 and parts[4] == "aws4_request" else "an unreadable scope"
    parts = request.query_params.get("X-Amz-Credential", "").split("/")
    if len(parts) == 5:
        return parts[3]
    # Signature V2 survives only in S3 (boto3's presigned URLs still default to it).
    if authorization.startswith("AWS ") or "AWSAccessKeyId" in request.query_params:
        return "s3"
    return None


# Query parameters of the object requests the execution role's two actions cover (s3:GetObject:
# GET/HEAD, ranges and response overrides; s3:PutObject: PUT and the multipart upload steps).
_OBJECT_QUERY = {"partNumber", "uploadId", "uploads", "x-id", "versionId"}
# What a presigned URL carries besides: dropped, since the listener signs nothing and moto checks nothing.
_SIGNING_QUERY = ("X-Amz-", "AWSAccessKeyId", "Signature", "Expires")
_DIGEST = re.compile(r"[0-9a-f]{64}")  # a session id's sha256 (backups.py session_prefix)
# An object key's bytes as the forward spells them: only what needs no escaping survives unescaped.
_KEY_SAFE = "/-_.~!$&'()*+,;=:@"


class Refused(Exception):
    """A request the listener does not forward; the message says why (rendered as S3's AccessDenied)."""


@dataclass(frozen=True)
class ObjectRequest:
    """What the listener forwards, rebuilt from parts it checked: never the caller's own path."""

    method: str
    bucket: str
    key: str
    query: tuple[tuple[str, str], ...]

    def target(self) -> str:
        """The path and query sent upstream, each part escaped, so nothing downstream re-reads it."""
        path = f"/{self.bucket}/{urllib.parse.quote(self.key, safe=_KEY_SAFE)}"
        return path + ("?" + urllib.parse.urlencode(self.query) if self.query else "")


def authorise_s3(
    bucket: str, method: str, raw_path: bytes, raw_query: bytes, allowed: str | None = None
) -> ObjectRequest:
    """What iam/backup-policy-statement.json grants, checked on the request the listener forwards:
    s3:GetObject and s3:PutObject on BUCKET/v2/*, path-style, as a session's role on AWS, and
    stricter: only keys under `allowed` (the session's own `v2/<scope>/<digest>`, backups.py) when
    the request came through its compute's socket, else keys of that shape. No ListBucket, no
    DeleteObject, no other bucket, no moto API. The key is read once, decoded, and refused if any
    segment is empty, `.` or `..` (an upstream would normalise those away)."""
    try:
        path = urllib.parse.unquote(raw_path.decode("ascii"), errors="strict")
        pairs = urllib.parse.parse_qsl(raw_query.decode("ascii"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError) as error:
        raise Refused(f"the request's path or query is not valid percent-encoded UTF-8 ({error})") from None
    _, _, rest = path.partition("/")
    name, slash, key = rest.partition("/")
    if not path.startswith("/") or name != bucket or not slash:
        raise Refused(f"only objects of the backup bucket {bucket} are served, path-style")
    segments = key.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise Refused("an object key with an empty, '.' or '..' segment is not served")
    if allowed is not None and not key.startswith(allowed + "/"):
        raise Refused(f"only this session's own backup objects ({bucket}/{allowed}/*) are served")
    if len(segments) < 4 or segments[0] != KEY_VERSION or not SCOPE_PATTERN.fullmatch(segments[1]):
        raise Refused(f"only object keys {bucket}/{KEY_VERSION}/SCOPE/SESSION-DIGEST/NAME are served")
    if not _DIGEST.fullmatch(segments[2]):
        raise Refused(f"only object keys {bucket}/{KEY_VERSION}/SCOPE/SESSION-DIGEST/NAME are served")
    if any(ord(c) < 0x20 or c in "\\\x7f" for c in key):
        raise Refused("an object key with a control character or a backslash is not served")
    query = tuple((k, v) for k, v in pairs if not k.startswith(_SIGNING_QUERY))
    names = {k for k, _ in query}
    if names - _OBJECT_QUERY and not all(k.startswith("response-") for k in names - _OBJECT_QUERY):
        raise Refused("a subresource (?acl, ?tagging, ...) is another action than GetObject or PutObject")
    if method not in ("GET", "HEAD", "PUT") and not (method == "POST" and names & {"uploads", "uploadId"}):
        raise Refused(f"{method} is not GetObject or PutObject")
    return ObjectRequest(method, name, key, query)
