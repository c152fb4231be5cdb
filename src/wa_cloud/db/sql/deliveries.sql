-- name: insert_deliveries
-- One statement for a whole group of concurrent webhook bodies; announced after it commits
-- (db/announce.py: a NOTIFY here would queue this commit behind every other notifying one).
INSERT INTO deliveries (source, body) SELECT * FROM unnest($1::text[], $2::bytea[]);

-- name: announce
-- A NOTIFY in a transaction of its own, committed without waiting for the WAL flush: the
-- setting is local to this statement's transaction and read as it commits.
SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '');

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

-- name: commit_async
-- A transaction that needs no fsync of its own: what it writes is redone from what is already
-- durable (an indexing batch), or flushed by a synchronous commit before anyone acts on it
-- outside (the outbox's claim). The caller's comment says which.
SET LOCAL synchronous_commit = off;

-- name: finish_deliveries
-- A batch indexed: processed, under the lease that claimed it (the caller checks the count).
UPDATE deliveries
   SET state = 'processed', processed_at = now(), lease_token = NULL, locked_until = NULL
 WHERE id = ANY ($1::bigint[]) AND lease_token = $2;

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

-- name: deliveries_estimate
-- The planner's row count: free, and close enough to choose how to count.
SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'deliveries'::regclass;

-- name: delivery_counts
-- Exact, for a table small enough to count on every scrape.
SELECT state, count(*) AS n FROM deliveries GROUP BY state;

-- name: delivery_counts_estimated
-- Cheap at any size (a scrape every few seconds must not scan the table): pending and
-- quarantined counted through their small indexes up to a cap, processed estimated from the
-- planner's row count ($1, read just before by deliveries_estimate).
WITH pending AS (
    SELECT count(*) AS n FROM (SELECT 1 FROM deliveries WHERE state = 'pending'
                                LIMIT 1000000) AS p
), quarantined AS (
    SELECT count(*) AS n FROM (SELECT 1 FROM quarantine LIMIT 1000000) AS q
), total AS (
    SELECT $1::bigint AS n
), counts AS (
    SELECT 'pending' AS state, pending.n FROM pending
    UNION ALL SELECT 'quarantined', quarantined.n FROM quarantined
    UNION ALL SELECT 'processed', greatest(total.n - pending.n - quarantined.n, 0)
      FROM total, pending, quarantined
)
SELECT state, n FROM counts WHERE n > 0;

-- name: processing_lag
SELECT coalesce(extract(epoch FROM now() - min(received_at)), 0)::float8
  FROM deliveries WHERE state = 'pending';

-- name: orphaned_count
-- Through the partial index on orphaned events, capped like the counts above.
SELECT count(*) FROM (SELECT 1 FROM events WHERE orphaned LIMIT 1000000) AS o;

-- name: app_secret
SELECT app_secret_enc, verify_token_enc FROM apps WHERE app_id = $1;

-- name: gateway_secret
-- The hash of the secret a web-session number's gateway sends with its webhooks.
SELECT s.secret_hash FROM web_sessions s
  JOIN numbers n ON n.phone_number_id = s.phone_number_id AND n.tenant_id = s.tenant_id
 WHERE s.phone_number_id = $1 AND n.provider = 'websession' AND n.removed_at IS NULL;

-- name: delivery_with_quarantine
-- One stored delivery and, if quarantined, why (`wa-cloud deliveries show`).
SELECT d.id, d.source, d.received_at, d.state, d.attempts, d.run_after, d.processed_at,
       d.last_error, d.body, q.code AS quarantine_code, q.reason AS quarantine_reason,
       q.created_at AS quarantined_at
  FROM deliveries d LEFT JOIN quarantine q ON q.delivery_id = d.id
 WHERE d.id = $1;

-- name: lock_deliveries_by_id
-- The deliveries a replay names, locked so it checks and changes them as one (retention skips
-- locked rows, so a body cannot be cleared between the check and the replay).
SELECT d.id, d.source, d.state, d.body = ''::bytea AS body_cleared, q.code,
       coalesce(q.created_at, d.processed_at) AS quarantined_at
  FROM deliveries d LEFT JOIN quarantine q ON q.delivery_id = d.id
 WHERE d.id = ANY($1::bigint[])
 ORDER BY d.id
   FOR UPDATE OF d;

-- name: lock_quarantined_since
-- Quarantined at or after $1: read from the small quarantine table, never a scan of every
-- delivery ever received.
SELECT d.id, d.source, d.state, d.body = ''::bytea AS body_cleared, q.code,
       q.created_at AS quarantined_at
  FROM quarantine q JOIN deliveries d ON d.id = q.delivery_id
 WHERE d.state = 'quarantined' AND q.created_at >= $1
 ORDER BY d.id
   FOR UPDATE OF d;

-- name: replay_deliveries
-- Quarantined deliveries back to pending as if just received, announced to the workers. The
-- quarantine row goes: a delivery that fails again gets a fresh one with the new reason (the
-- unique delivery_id would otherwise keep the old one); `last_error` keeps the old reason.
WITH replayed AS (
    UPDATE deliveries
       SET state = 'pending', attempts = 0, run_after = now(), lease_token = NULL,
           locked_until = NULL, processed_at = NULL
     WHERE id = ANY($1::bigint[]) AND state = 'quarantined'
    RETURNING id
), forgotten AS (
    DELETE FROM quarantine WHERE delivery_id IN (SELECT id FROM replayed)
)
SELECT count(*) AS replayed, pg_notify('{{channel.deliveries}}', count(*)::text) AS notified
  FROM replayed;

-- name: plan_each_batch
SET LOCAL plan_cache_mode = force_custom_plan;

-- name: lock_contacts
-- Transaction-level locks on "<number>:<customer>" keys, taken in the order given (sorted by
-- the caller), so concurrent batches never wait on each other in a cycle.
SELECT pg_advisory_xact_lock(hashtextextended(k, 0))
  FROM (SELECT k FROM unnest($1::text[]) WITH ORDINALITY AS u(k, n) ORDER BY n) AS ordered;
