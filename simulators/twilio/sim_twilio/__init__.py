"""Twilio simulator: Messages and Calls (2010-04-01 API) plus SendGrid ``mail/send``.

It speaks the vendors' wire formats (form-encoded requests, HTTP Basic auth, Twilio error bodies,
signed status callbacks), keeps its state in memory, and exposes fault injection and a record of
what it received under ``/_sim/``. Build it with :func:`sim_twilio.app.create_app`.
"""
