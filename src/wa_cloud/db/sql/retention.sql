-- The retention job (retention.py): one batch per statement, each in its own short transaction.
-- Rows another transaction holds are skipped (SKIP LOCKED), never waited for: the next pass
-- takes them.

-- name: retention_lock
-- Held to the end of the batch's transaction: pooled connections are not reset between uses,
-- so a session lock could outlive its holder's intent.
SELECT pg_try_advisory_xact_lock(hashtext('wa_cloud.retention'));

-- name: purge_delivery_bodies
-- Older than $1 seconds, processed or quarantined: the body is cleared, the row stays. Rows
-- stay because messages, statuses and events point at them, and deleting them would have
-- PostgreSQL look for those references in three unindexed columns, one row at a time.
WITH due AS (
    SELECT id FROM deliveries
     WHERE state <> 'pending' AND body <> ''::bytea
       AND received_at < now() - make_interval(secs => $1)
     ORDER BY received_at
     LIMIT $2
     FOR UPDATE SKIP LOCKED
), cleared AS (
    UPDATE deliveries d SET body = ''::bytea FROM due WHERE d.id = due.id RETURNING 1
)
SELECT count(*) FROM cleared;

-- name: delete_finished_forwards
-- Delivered or given up more than $1 seconds ago; pending ones are still the queue.
WITH due AS (
    SELECT id FROM forwards
     WHERE state <> 'pending' AND created_at < now() - make_interval(secs => $1)
     ORDER BY created_at
     LIMIT $2
     FOR UPDATE SKIP LOCKED
), deleted AS (
    DELETE FROM forwards f USING due WHERE f.id = due.id RETURNING 1
)
SELECT count(*) FROM deleted;

-- name: delete_orphaned_events
-- Changes for numbers nobody owned, kept as long as raw bodies are.
WITH due AS (
    SELECT id FROM events
     WHERE orphaned AND created_at < now() - make_interval(secs => $1)
     ORDER BY created_at
     LIMIT $2
     FOR UPDATE SKIP LOCKED
), deleted AS (
    DELETE FROM events e USING due WHERE e.id = due.id RETURNING 1
)
SELECT count(*) FROM deleted;

-- name: delete_expired_media
-- Each number's downloads past its own media_retention_days (stored or failed; a pending one
-- is still the download queue). GET /v1/media/{id} then answers 404.
WITH due AS (
    SELECT m.id
      FROM numbers n
     CROSS JOIN LATERAL (
        SELECT id FROM media
         WHERE phone_number_id = n.phone_number_id AND state <> 'pending'
           AND created_at < now() - make_interval(days => n.media_retention_days)
         ORDER BY created_at
         LIMIT $1
         FOR UPDATE SKIP LOCKED
     ) m
     LIMIT $1
), deleted AS (
    DELETE FROM media m USING due WHERE m.id = due.id RETURNING 1
)
SELECT count(*) FROM deleted;

-- name: delete_stale_pair_pacing
-- A pair whose theoretical arrival time passed more than $1 seconds ago paces nothing: the
-- sender treats a missing row exactly like it. No index on tat: the sender moves it on every
-- send, and an index would cost each send more than this scan costs a pass.
WITH due AS (
    SELECT phone_number_id, recipient FROM pair_pacing
     WHERE tat < now() - make_interval(secs => $1)
       AND (penalty_until IS NULL OR penalty_until < now())
     LIMIT $2
     FOR UPDATE SKIP LOCKED
), deleted AS (
    DELETE FROM pair_pacing p USING due
     WHERE p.phone_number_id = due.phone_number_id AND p.recipient = due.recipient
    RETURNING 1
)
SELECT count(*) FROM deleted;
