-- How far reconciliation has read each stream (a topic, or payments) of each division:
-- records Modified after this are read again on the next pass.
CREATE TABLE watermarks (
    connection_id   text        NOT NULL,
    division        integer     NOT NULL,
    stream          text        NOT NULL,
    modified_through timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connection_id, division, stream)
);
