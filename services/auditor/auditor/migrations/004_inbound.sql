-- What recipients texted us: opt-outs (STOP...), opt-ins (START...), help requests and other
-- replies, once per MessageSid. The sender is kept masked: acting on it is the dispatcher's.
CREATE TABLE inbound (
    message_sid       text PRIMARY KEY,
    connection_id     text,
    sender            text NOT NULL,
    kind              text NOT NULL,
    keyword           text,
    received_at       timestamptz NOT NULL
);
