//! The tables of the shared ledger, created at start if missing (idempotent DDL, one
//! transaction under an advisory lock so that workers starting together do not race).
//!
//! Money is integer cents (`int8`); `requestedAt` is integer microseconds since the
//! Unix epoch at millisecond precision (`int8`), the same value payroute sends, so a
//! summary window compares exactly what the processors compare.

/// Bumped when a table changes shape; stored in `payroute_meta`.
pub(super) const SCHEMA_VERSION: i64 = 1;

pub(super) const DDL: &str = r#"
CREATE TABLE IF NOT EXISTS payroute_meta (
    one          boolean PRIMARY KEY DEFAULT true CHECK (one),
    schema       int8 NOT NULL,
    purge_gen    int8 NOT NULL DEFAULT 0
);
INSERT INTO payroute_meta (schema) VALUES (1) ON CONFLICT DO NOTHING;

-- One row per correlationId accepted since the last purge. state: 0 pending (owned by
-- `owner`, a worker incarnation), 1 recorded, 2 parked (a processor refused it).
CREATE TABLE IF NOT EXISTS payroute_payments (
    id              uuid PRIMARY KEY,
    amount          int8 NOT NULL,
    owner           uuid NOT NULL,
    seq             int8 NOT NULL,
    state           int2 NOT NULL DEFAULT 0,
    -- The requestedAt sent to each processor while a copy may still land there.
    sent_default    int8,
    sent_fallback   int8,
    -- Once recorded: where, when (the processor's copy) and how much.
    processor       int2,
    requested_at    int8,
    recorded_amount int8
);
CREATE SEQUENCE IF NOT EXISTS payroute_payments_seq;
CREATE INDEX IF NOT EXISTS payroute_payments_recorded
    ON payroute_payments (requested_at) INCLUDE (processor, recorded_amount)
    WHERE state = 1;
CREATE INDEX IF NOT EXISTS payroute_payments_pending
    ON payroute_payments (owner, seq) WHERE state = 0;

-- Worker incarnations and their leases (the database's clock decides).
CREATE TABLE IF NOT EXISTS payroute_workers (
    id           uuid PRIMARY KEY,
    name         text NOT NULL,
    started      timestamptz NOT NULL DEFAULT now(),
    lease_until  timestamptz NOT NULL
);

-- Named leases: one health poller per processor for the whole deployment.
CREATE TABLE IF NOT EXISTS payroute_leases (
    name    text PRIMARY KEY,
    holder  uuid NOT NULL,
    until   timestamptz NOT NULL
);

-- The latest health poll of each processor, written by the lease holder.
CREATE TABLE IF NOT EXISTS payroute_health (
    processor             int2 PRIMARY KEY,
    failing               boolean NOT NULL,
    min_response_time_ms  int8 NOT NULL,
    seq                   int8 NOT NULL
);
"#;
