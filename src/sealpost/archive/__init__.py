"""The mail archive (issue 15): every inbound and outbound message of a tenant, write-once,
each one an evidence record, threaded, owned by an agent, searchable, held and exported."""

from sealpost.archive import events as events  # registers the archive's event kinds
