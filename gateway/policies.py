"""What the gateway enforces on transcoded calls because it knows who the user is.

The transcoder stays generic; these few rules are about identity and the SDK's retry behaviour,
not about routes, and are keyed by RPC full name:

* ``RegisterComputePlan``: the creator is the authenticated user, whatever the body says.
* ``UpdateFunction``: users rename functions; the built image is set by the owner's builder only.
* ``RegisterComputePlan`` again: a re-post of a plan this organization already registered answers
  the existing plan instead of 409, because SDK 1.0.0 crashes on a 409 there and re-posts after
  any 5xx (contract §3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from google.protobuf.message import Message
from tessera.asset.v1 import asset_service_pb2 as api

from gateway.errors import HttpError
from gateway.upstreams import Principal

if TYPE_CHECKING:
    from gateway.transcoder import RpcRoute, Transcoder

_ASSET = "tessera.asset.v1.AssetService."
REGISTER_PLAN = _ASSET + "RegisterComputePlan"
UPDATE_FUNCTION = _ASSET + "UpdateFunction"


def before_call(rpc: str, message: Message, principal: Principal) -> None:
    """Apply the identity rules to a bound request."""
    if rpc == REGISTER_PLAN:
        message.creator = principal.username
    elif rpc == UPDATE_FUNCTION and message.HasField("image"):
        raise HttpError(400, "image: the built image is set by the organization's builder, not through the API")


async def on_error(
    transcoder: Transcoder, route: RpcRoute, message: Message, principal: Principal, error: grpc.RpcError
) -> tuple[Message, int] | None:
    """A reply that replaces a failed call (and its HTTP status), or None to report the error."""
    if route.full_name != REGISTER_PLAN or error.code() != grpc.StatusCode.ALREADY_EXISTS:
        return None
    upstreams = transcoder.upstreams
    try:
        existing = await upstreams.asset().GetComputePlan(
            api.GetComputePlanRequest(key=message.key), metadata=principal.metadata(), timeout=upstreams.call_timeout
        )
    except grpc.RpcError:
        return None
    plan = existing.compute_plan
    if plan.owner != upstreams.org_id or plan.name != message.name or plan.tag != message.tag:
        return None
    return api.RegisterComputePlanResponse(compute_plan=plan), 200
