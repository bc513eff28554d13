-- Expand: schema generation 2 writes a note with every order. Nullable and without a default,
-- so adding it rewrites nothing and generation 1 keeps working beside it.
ALTER TABLE orders ADD COLUMN note text;
