"""Bearer-token authentication for the fleet API.

Agents send `authorization: Bearer <token>`. The interceptor refuses a missing, unknown or
revoked token with UNAUTHENTICATED before any handler runs (or the request is decoded), and
hands the resolved token to the handler (`caller()`), which checks that the agent named in
a request is the one bound to it. Tokens are looked up by their sha256, so no secret is
compared or logged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar

import grpc

from coordinator.state import Store, Token

__all__ = ["TokenInterceptor", "caller", "token_from_metadata", "FLEET_PREFIX"]

FLEET_PREFIX = "/ofafleet.v1.Fleet/"
# The token of the RPC being handled: set by the interceptor's wrapper, in the handler's task.
_CALLER: ContextVar[Token] = ContextVar("caller")


def caller() -> Token:
    """The token the interceptor resolved for the RPC being handled (LookupError outside
    one: every fleet method runs behind TokenInterceptor)."""
    return _CALLER.get()


def token_from_metadata(metadata: Sequence[tuple[str, str]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and value.startswith("Bearer "):
            return value[len("Bearer ") :].strip() or None
    return None


def authenticate(store: Store, metadata) -> Token | str:
    """The token's record, or the reason it is refused."""
    secret = token_from_metadata(metadata)
    if secret is None:
        return "missing bearer token (authorization metadata)"
    token = store.token_by_secret(secret)
    if token is None:
        return "unknown token"
    if token.revoked:
        return f"token {token.name!r} has been revoked"
    return token


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """`run(call, *args)` runs a store call off the event loop (FleetService.db)."""

    def __init__(self, store: Store, run: Callable[..., Awaitable]) -> None:
        self.store, self.run = store, run

    async def intercept_service(self, continuation, handler_call_details):
        if not handler_call_details.method.startswith(FLEET_PREFIX):
            return await continuation(handler_call_details)  # health checks need no token
        outcome = await self.run(authenticate, self.store, handler_call_details.invocation_metadata)
        if isinstance(outcome, Token):
            return _with_caller(await continuation(handler_call_details), outcome)

        async def refuse(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, outcome)

        return grpc.unary_unary_rpc_method_handler(refuse)


def _with_caller(
    handler: grpc.RpcMethodHandler | None, token: Token
) -> grpc.RpcMethodHandler | None:
    """The (unary) handler, run with `caller()` answering `token`."""
    if handler is None:  # an unknown method: grpc answers UNIMPLEMENTED
        return None
    behaviour = handler.unary_unary

    async def handle(request, context):
        _CALLER.set(token)
        return await behaviour(request, context)

    return grpc.unary_unary_rpc_method_handler(
        handle,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
