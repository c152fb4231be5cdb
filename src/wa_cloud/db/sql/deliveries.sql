-- name: insert_deliveries
-- One statement for a whole group of concurrent webhook bodies: stored and announced together.
WITH inserted AS (
    INSERT INTO deliveries (source, body)
    SELECT * FROM unnest($1::text[], $2::bytea[])
    RETURNING id
)
SELECT pg_notify('wa_deliveries', count(*)::text) FROM inserted;

-- name: claim_deliveries
UPDATE deliveries
   SET attempts = attempts + 1, lease_token = $1, locked_until = now() + make_interval(secs => $2)
 WHERE id IN (
        SELECT id FROM deliveries
         WHERE state = 'pending' AND run_after <= now()
           AND (locked_until IS NULL OR locked_until < now())
         ORDER BY run_after, id
         LIMIT $3
         FOR UPDATE SKIP LOCKED)
RETURNING id, source, body, attempts, received_at;

-- name: finish_delivery
UPDATE deliveries
   SET state = $3, processed_at = now(), lease_token = NULL, locked_until = NULL
 WHERE id = $1 AND lease_token = $2;

-- name: retry_delivery
UPDATE deliveries
   SET run_after = now() + make_interval(secs => $3), lease_token = NULL, locked_until = NULL,
       last_error = $4
 WHERE id = $1 AND lease_token = $2;

-- name: quarantine_delivery
WITH moved AS (
    UPDATE deliveries
       SET state = 'quarantined', processed_at = now(), lease_token = NULL,
           locked_until = NULL, last_error = $4
     WHERE id = $1 AND lease_token = $2
    RETURNING id)
INSERT INTO quarantine (delivery_id, code, reason)
SELECT id, $3, $4 FROM moved
ON CONFLICT (delivery_id) DO NOTHING;

-- name: delivery_counts
SELECT state, count(*) AS n FROM deliveries GROUP BY state;

-- name: processing_lag
SELECT coalesce(extract(epoch FROM now() - min(received_at)), 0)::float8
  FROM deliveries WHERE state = 'pending';

-- name: orphaned_count
SELECT count(*) FROM events WHERE orphaned;

-- name: app_secret
SELECT app_secret_enc, verify_token_enc FROM apps WHERE app_id = $1;
