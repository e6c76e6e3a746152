"""Consumer groups (Kafka's classic group protocol).

``state``            the group state machine as data, member and group records
``coordinator``      GroupCoordinator: sans-IO, injected clock, reply callbacks
``handlers``         FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup
``offset_handlers``  OffsetCommit, OffsetFetch, OffsetDelete, ListGroups,
                     DescribeGroups, DeleteGroups
"""

from kawa.broker.groups.coordinator import GroupConfig, GroupCoordinator

__all__ = ["GroupConfig", "GroupCoordinator"]
