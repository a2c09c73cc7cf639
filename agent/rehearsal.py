"""A boto3 request answered in this process and never sent: how the warm-up rehearses the first
S3 and model requests (agent/service/warmup.py). A leaf: agent/model and agent/backup use it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def answered_in_process(client: Any, event: str, marker: str, status: int, body: bytes) -> Iterator[None]:
    """While inside, a request of the boto3 `client` whose URL contains `marker` is answered here
    with `status` and `body` and never sent (botocore's before-send event); every other request goes
    out as usual. A rehearsal: the request runs the client's whole pipeline (validation, endpoint
    rules, credentials, signing, parsing), so the first real one finds that first-time work done."""
    from botocore.awsrequest import AWSResponse

    class Body:  # what AWSResponse reads its content from
        @staticmethod
        def stream() -> Iterator[bytes]:
            yield body

    def answer(request: Any, **_: Any) -> AWSResponse | None:
        return AWSResponse(request.url, status, {}, Body()) if marker in request.url else None

    client.meta.events.register_first(event, answer)
    try:
        yield
    finally:
        client.meta.events.unregister(event, answer)
