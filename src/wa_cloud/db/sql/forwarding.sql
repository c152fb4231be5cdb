-- name: put_webhook
-- One webhook per tenant: a PUT replaces the URL, the events and the secret.
INSERT INTO tenant_webhooks (tenant_id, url, events, secret_enc)
VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant_id) DO UPDATE
   SET url = excluded.url, events = excluded.events, secret_enc = excluded.secret_enc,
       updated_at = now()
RETURNING url, events, created_at, updated_at;

-- name: get_webhook
SELECT url, events, created_at, updated_at FROM tenant_webhooks WHERE tenant_id = $1;

-- name: delete_webhook
DELETE FROM tenant_webhooks WHERE tenant_id = $1 RETURNING url;

-- name: drop_pending_forwards
-- The webhook is gone: what was still waiting for it will not be sent.
UPDATE forwards
   SET state = 'failed', last_error = 'the webhook was deleted', locked_until = NULL
 WHERE tenant_id = $1 AND state = 'pending';

-- name: enqueue_forward
-- On the caller's connection, in its transaction: a row only when the tenant's webhook takes
-- this event, once per dedup key, and a wake-up for the forwarder at commit.
WITH queued AS (
    INSERT INTO forwards (tenant_id, event, payload, dedup_key)
    SELECT $1, $2, $3, $4
     WHERE EXISTS (SELECT 1 FROM tenant_webhooks w WHERE w.tenant_id = $1 AND $2 = ANY (w.events))
    ON CONFLICT (tenant_id, dedup_key) DO NOTHING
    RETURNING id
)
SELECT pg_notify('wa_forwards', '') FROM queued;

-- name: claim_forwards
-- Due forwards with a lease: `run_after` moves to the lease's end, so a row whose worker died
-- is due again then; outcomes are written only under the lease token that claimed the row.
WITH due AS (
    SELECT id FROM forwards
     WHERE state = 'pending' AND run_after <= now()
     ORDER BY run_after
     LIMIT $1
     FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE forwards f
       SET attempts = f.attempts + 1,
           lease_token = $2,
           locked_until = now() + make_interval(secs => $3),
           run_after = now() + make_interval(secs => $3)
      FROM due
     WHERE f.id = due.id
    RETURNING f.id, f.tenant_id, f.event, f.payload, f.attempts, f.created_at
)
SELECT c.id, c.tenant_id, c.event, c.payload, c.attempts, c.created_at, w.url, w.secret_enc
  FROM claimed c
  LEFT JOIN tenant_webhooks w ON w.tenant_id = c.tenant_id;

-- name: forward_next_due
-- Seconds until the next pending forward is due (NULL: none pending).
SELECT greatest(0, extract(epoch FROM min(run_after) - now()))::float8
  FROM forwards WHERE state = 'pending';

-- name: forward_delivered
UPDATE forwards
   SET state = 'delivered', last_status = $3, last_error = NULL, delivered_at = now(),
       locked_until = NULL
 WHERE id = $1 AND lease_token = $2 AND state = 'pending'
RETURNING id;

-- name: forward_retry
UPDATE forwards
   SET run_after = now() + make_interval(secs => $5), last_status = $3, last_error = $4,
       locked_until = NULL
 WHERE id = $1 AND lease_token = $2 AND state = 'pending'
RETURNING id;

-- name: forward_failed
UPDATE forwards
   SET state = 'failed', last_status = $3, last_error = $4, locked_until = NULL
 WHERE id = $1 AND lease_token = $2 AND state = 'pending'
RETURNING id;

-- name: list_forwards
-- A tenant's delivery log, newest first; ($3, $4) is the cursor (created_at, id).
SELECT id, event, state, attempts, last_status, last_error, created_at, delivered_at
  FROM forwards
 WHERE tenant_id = $1
   AND ($2::text IS NULL OR state = $2)
   AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
 ORDER BY created_at DESC, id DESC
 LIMIT $5;
