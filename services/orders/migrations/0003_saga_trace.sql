-- The trace of the request that placed the order (a W3C traceparent), so every step the saga
-- runs later, on whichever instance, shows in that request's trace.
ALTER TABLE sagas ADD COLUMN traceparent TEXT;
