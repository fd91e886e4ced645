"""gRPC handlers of the event service: the organization's feed and news feed, read from the store."""

from __future__ import annotations

from tessera.event.v1 import event_service_pb2 as api
from tessera.event.v1 import event_service_pb2_grpc as api_grpc

from services.event.store import Store
from services.kit.db import UnitOfWork
from services.kit.hub import Hub
from services.kit.identity import current_caller

REPLAY_BATCH = 100


class EventService(api_grpc.EventServiceServicer):
    """The organization's feed, as followed from the ledger, in the caller's channel."""

    def __init__(self, reads: UnitOfWork[Store], hub: Hub) -> None:
        self._reads = reads
        self._hub = hub

    async def ListEvents(self, request, context):
        channel = current_caller().channel
        page = await self._reads.run(lambda store: store.list_events(channel, request))
        return api.ListEventsResponse(
            events=page.items, next_page_token=page.next_page_token, total_size=page.total_size
        )

    async def SubscribeEvents(self, request, context):
        """The feed after the cursor, then live, in the ledger's order."""
        channel = current_caller().channel
        position = request.after_position
        while True:
            seen = self._hub.generation
            events = await self._reads.run(
                lambda store, after=position: store.events_after(channel, after, REPLAY_BATCH)
            )
            for event in events:
                yield api.SubscribeEventsResponse(event=event)
                position = event.position
            if len(events) < REPLAY_BATCH:
                await self._hub.wait(seen, timeout=1.0)

    async def ListNewsFeed(self, request, context):
        """Plans created, started and ended, and datasets created, newest first."""
        channel = current_caller().channel
        page = await self._reads.run(lambda store: store.news_feed(channel, request))
        return api.ListNewsFeedResponse(
            items=page.items, next_page_token=page.next_page_token, total_size=page.total_size
        )
