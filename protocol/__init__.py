"""The contract between a gate and the station, imported by both and importing neither.

One module per part of the contract: :mod:`protocol.events` (event model, type names, schema
version), :mod:`protocol.uuid7` (sortable event ids), :mod:`protocol.packs` (a backlog's events
several to a message), :mod:`protocol.topics` (MQTT topic names),
:mod:`protocol.canonical` (RFC 8785 canonical JSON), :mod:`protocol.bounded_json` (limits checked
on network bytes before they are decoded), :mod:`protocol.envelope` (the signed command envelope),
:mod:`protocol.mqtt` (the one asyncio MQTT adapter), :mod:`protocol.backoff` (reconnect delays),
:mod:`protocol.residents` and :mod:`protocol.sync` (the resident file and the ``sync`` payload).
Apart from the MQTT adapter nothing here does I/O, so both sides can test it on plain values.
"""
