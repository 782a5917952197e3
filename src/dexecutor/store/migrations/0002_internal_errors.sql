-- Deterministic exceptions (bugs, rows the engine cannot process) each order suffered.
-- The engine fails an order with `internal_error` once this reaches
-- INTERNAL_ERROR_LIMIT; in PostgreSQL so the bound survives restarts and Redis loss.
ALTER TABLE orders ADD COLUMN internal_errors integer NOT NULL DEFAULT 0;
