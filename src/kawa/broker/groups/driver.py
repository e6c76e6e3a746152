"""The asyncio edge of the coordinator: fire its deadlines, expire old offsets."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from kawa.broker.groups.coordinator import GroupCoordinator
from kawa.deploy.config import BrokerConfig

log = logging.getLogger("kawa.groups")


async def drive(
    groups: GroupCoordinator, config: BrokerConfig, topic_exists: Callable[[str], bool]
) -> None:
    """Every ``group_timer_interval_ms``: ``tick``; every
    ``offsets_retention_check_interval_ms``: expire offsets (retention, deleted topics)."""
    interval_s = config.group_timer_interval_ms / 1000
    next_sweep_ms = time.time() * 1000 + config.offsets_retention_check_interval_ms
    while True:
        await asyncio.sleep(interval_s)
        now_ms = int(time.time() * 1000)
        try:
            groups.tick(now_ms)
            if now_ms >= next_sweep_ms:
                next_sweep_ms = now_ms + config.offsets_retention_check_interval_ms
                expired = groups.expire_offsets(now_ms, topic_exists)
                if expired:
                    log.info("expired %d committed offsets", expired)
        except Exception:
            log.exception("consumer group timers failed")
