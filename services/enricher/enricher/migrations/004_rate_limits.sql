-- Exact's limits per app and division, shared by every enricher replica (Exact counts them per
-- key, not per process): whose turn it is to call, and the windows its last answer reported.
--
-- busy_until is a lease, not a lock held across the call: a replica takes the turn with one
-- conditional upsert (busy_until < now()), calls Exact holding no database connection, and
-- hands the turn back with the windows it read. A replica that dies mid-call leaves a lease
-- that simply runs out.
CREATE TABLE rate_limits (
    connection_id      text        NOT NULL,
    division           integer     NOT NULL,
    busy_until         timestamptz NOT NULL DEFAULT '-infinity',
    holder             uuid,
    minutely_remaining integer,
    minutely_reset_at  timestamptz,
    daily_remaining    integer,
    daily_reset_at     timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connection_id, division)
);

-- Error responses (4xx but 429) per endpoint and clock hour: Exact blocks the key for the hour
-- past 10, whichever replica made them. Rows of past hours are deleted as new ones are counted.
CREATE TABLE rate_limit_errors (
    connection_id text        NOT NULL,
    division      integer     NOT NULL,
    endpoint      text        NOT NULL,
    hour_at       timestamptz NOT NULL,
    errors        integer     NOT NULL,
    PRIMARY KEY (connection_id, division, endpoint, hour_at)
);
