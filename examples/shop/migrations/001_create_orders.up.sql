-- The orders table. `ref` is the client's idempotency key: a retried write is stored once.
-- `coupon` is read and written by schema generation 1 only (migration 003 drops it).
CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ref text NOT NULL UNIQUE,
    item text NOT NULL,
    quantity bigint NOT NULL CHECK (quantity > 0),
    coupon text,
    created_at timestamptz NOT NULL DEFAULT now()
);
