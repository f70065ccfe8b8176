"""Outgoing mail: composition (Jinja2 text + HTML twins), the outbox, transports and the
dispatcher that sends outbox rows after the transaction that wrote them has committed."""
