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

-- name: delete_finished_replies
-- Reply jobs answered (or given up) more than $1 seconds ago: their messages and ledger rows
-- keep what matters; the job itself only says how the burst went. Walks replies_finished.
WITH due AS (
    SELECT id FROM replies
     WHERE state IN ('done', 'failed') AND finished_at < now() - make_interval(secs => $1)
     ORDER BY finished_at
     LIMIT $2
     FOR UPDATE SKIP LOCKED
), deleted AS (
    DELETE FROM replies r USING due WHERE r.id = due.id RETURNING 1
)
SELECT count(*) FROM deleted;

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

-- name: purge_conversations
-- Each number's messages past its assistant's retention_hours (the bots row of the number's
-- tenant; none: 24 hours; 0: kept): their text, payload, request and what was understood of
-- their media are cleared and their downloaded media deleted; the row stays (id, wamid,
-- direction, type, status, times: counts and threads still add up) and says when it was
-- purged. An outbound message still queued or being sent is left alone: the sender needs its
-- request. Walks messages_retention (per number, oldest first, unpurged only).
WITH due AS (
    SELECT m.id
      FROM numbers n
      LEFT JOIN bots b ON b.phone_number_id = n.phone_number_id AND b.tenant_id = n.tenant_id
     CROSS JOIN LATERAL (
        SELECT id FROM messages
         WHERE phone_number_id = n.phone_number_id AND purged_at IS NULL
           AND created_at < now() - make_interval(hours => coalesce(b.retention_hours, $2))
           AND NOT (direction = 'out' AND status IN ('queued', 'sending'))
         ORDER BY created_at
         LIMIT $1
         FOR UPDATE SKIP LOCKED
     ) m
     WHERE coalesce(b.retention_hours, $2) > 0
     LIMIT $1
), media_deleted AS (
    DELETE FROM media d USING due WHERE d.message_id = due.id
), purged AS (
    UPDATE messages m
       SET text = NULL, media_text = NULL, payload = '{}'::jsonb, request = NULL,
           fallback_template = NULL, purged_at = now()
      FROM due
     WHERE m.id = due.id
    RETURNING 1
)
SELECT count(*) FROM purged;

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

-- name: delete_old_tool_calls
-- The assistant's tool calls, kept as long as raw bodies are (their arguments quote customers).
WITH due AS (
    SELECT id FROM tool_calls
     WHERE created_at < now() - make_interval(secs => $1)
     ORDER BY created_at
     LIMIT $2
     FOR UPDATE SKIP LOCKED
), deleted AS (
    DELETE FROM tool_calls t USING due WHERE t.id = due.id RETURNING 1
)
SELECT count(*) FROM deleted;
