"""A WMS node's process, composed: the node service run by the engine, its master-data feeds, its Redis views,
its HTTP API and, with ``--auto``, the simulated workers.

Everything the node decides happens in ``NodeService`` (``services.wms_node.service``) inside the engine's
transactions; what is here runs beside it: the feeds it reads in memory (network, catalog, the ledger's
availability at this location), the view writer fed after each commit, the producer of the HTTP API's commands
and the auto-workers' loop.
"""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from schemas.topics import CATALOG, INVENTORY_AVAILABILITY, NETWORK, WMS_COMMANDS, WMS_TASKS
from services.runtime.feed import TopicFeed
from services.runtime.settings import Settings
from services.runtime.topicnames import full_topic_name
from services.wms_node.autowork import AutoWorkers
from services.wms_node.config import config_row, node_config
from services.wms_node.domain.node import Node
from services.wms_node.domain.workers import AutoWorker, behaviour_for
from services.wms_node.service import CommitSink, Committed, MasterData, NodeService
from services.wms_node.views import NodeViews, ViewWriter
from services.wms_node.web import CommandDesk, node_web


class ViewsAndReplies(CommitSink):
    """After each commit: the views (written behind, coalesced) and the HTTP requests waiting for a decision."""

    def __init__(self, writer: ViewWriter, desk: CommandDesk) -> None:
        self.writer = writer
        self.desk = desk

    def committed(self, batch: Committed) -> None:
        self.writer.put(batch.changes, batch.replies)
        self.desk.decided(batch.replies)


class NodeProcess:
    """The pieces of one node's process, and what starts beside the engine."""

    def __init__(self, settings: Settings, location: str, auto: bool = False) -> None:
        self.settings = settings
        self.location = location
        raw_config = os.environ.get("BATON_WMS_CONFIG")
        self.behaviour = behaviour_for(location, os.environ.get("BATON_WORKERS")) if auto else None
        reject_all = self.behaviour.reject_all if self.behaviour else False
        node = Node(location, node_config(location, raw_config, reject_all=reject_all))
        self.master = MasterData(location)
        self.inbox = full_topic_name(settings, WMS_COMMANDS, location)
        self.views = NodeViews(settings.redis_url, settings.namespace, location)
        self.writer = ViewWriter(self.views)
        self.desk = CommandDesk(settings.kafka_bootstrap, self.inbox, location)
        self.feeds = [
            TopicFeed(settings.kafka_bootstrap, full_topic_name(settings, NETWORK), self.master.on_network),
            TopicFeed(settings.kafka_bootstrap, full_topic_name(settings, CATALOG), self.master.on_catalog),
            TopicFeed(settings.kafka_bootstrap, full_topic_name(settings, INVENTORY_AVAILABILITY),
                      self.master.on_availability),
        ]
        self.service = NodeService(location, self.inbox, node, self.master, retain_s=config_row(location, raw_config)
                                   .retain_s, sink=ViewsAndReplies(self.writer, self.desk), on_start=self.start,
                                   feeds=self.feeds)
        self.background: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Before the node's first batch: views writer, feeds (caught up), the commands' producer, auto-workers."""
        self.background.append(asyncio.create_task(self.writer.run()))
        # started again whenever one fails (a broker bounced): a node's master data must never stay behind
        self.background += [asyncio.create_task(feed.run_forever()) for feed in self.feeds]
        await self.desk.start()
        if self.behaviour is not None:
            workers = AutoWorkers(self.settings.kafka_bootstrap, self.settings.group(self.service.name),
                                  full_topic_name(self.settings, WMS_TASKS, self.location), self.inbox,
                                  AutoWorker(self.location, self.behaviour))
            self.background.append(asyncio.create_task(workers.run()))
        for feed in self.feeds:
            await feed.caught_up.wait()

    def read(self, key: str) -> str | None:
        """An entity as last committed (None when unknown, or while the node's task is not assigned here)."""
        ctx = self.service.task_ctx
        return None if ctx is None else self.service.entities(ctx).committed(key)

    def web(self) -> web.Application:
        return node_web(self.location, self.read, self.views, self.desk)


def build(settings: Settings, location: str, auto: bool = False) -> NodeProcess:
    return NodeProcess(settings, location, auto)


__all__ = ["NodeProcess", "ViewsAndReplies", "build"]
