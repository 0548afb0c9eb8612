"""The SDK's one error for a failed API call, shared by the client and the event stream."""

from __future__ import annotations

from chainnode.core.errors import ChainError


class ClientError(ChainError):
    """A failed API call: the HTTP status (None without an answer), code and message, and the
    seconds the node asked to wait before trying again (`Retry-After`; None if it did not say)."""

    code = "client_error"

    def __init__(
        self, message: str, *, code: str, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.retry_after_s = retry_after_s
