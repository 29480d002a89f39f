"""Exact Online simulator: OAuth2 with rotating tokens, REST entities with OData paging, rate
limits and signed webhooks, speaking Exact's wire formats (architecture section 9).

Modules, from the wire inwards::

    server / app        serving and the composition root (create_app)
    pipeline            faults, token check, division, error block, rate limits, Atom, records
    token_endpoint      /api/oauth2/{token,auth}       -> oauth (token chains)
    api                 /api/v1/...                    -> odata, filters (query options)
    admin, control      /_sim/... (admin_http: JSON)   -> documents (record changes)
    store, entities     records per division, typed entity sets; seed data
    webhooks            subscriptions and signed deliveries
    clock, ratelimit, faults, calls, metrics, atom, errors
    client              SimExactAdmin, an async client of the admin API
"""
