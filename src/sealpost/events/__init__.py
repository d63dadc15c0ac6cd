"""Events out: the outbox's CloudEvents, the AMQP dispatcher and signed webhooks.

``registry`` and ``cloudevents`` are pure; ``dispatcher`` (positions, fan-out, AMQP) and
``webhooks`` (the sender) do the I/O.  ``docs/events.md`` is the integrator's guide.
"""
