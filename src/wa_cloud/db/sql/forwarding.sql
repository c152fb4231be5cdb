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
SELECT pg_notify('{{channel.forwards}}', '') FROM queued;

-- name: enqueue_forwards
-- The indexer's batch (payloads as JSON text, cast here): every row in one statement, each only while its tenant's webhook takes
-- the event, once per dedup key; one wake-up for the forwarder at commit.
WITH queued AS (
    INSERT INTO forwards (tenant_id, event, payload, dedup_key)
    SELECT u.tenant_id, u.event, u.payload::jsonb, u.dedup_key
      FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[])
           AS u (tenant_id, event, payload, dedup_key)
     WHERE EXISTS (SELECT 1 FROM tenant_webhooks w
                    WHERE w.tenant_id = u.tenant_id AND u.event = ANY (w.events))
    ON CONFLICT (tenant_id, dedup_key) DO NOTHING
    RETURNING 1
)
SELECT pg_notify('{{channel.forwards}}', '') WHERE EXISTS (SELECT 1 FROM queued);

-- name: claim_forwards
-- Due forwards with a lease: `run_after` moves to the lease's end, so a row whose worker died
-- is due again then; outcomes are written only under the lease token that claimed the row.
-- Fair between tenants: each tenant's oldest due rows, at most $4 minus what it has in flight
-- in this process ($5 tenants, $6 their counts), so a tenant whose endpoint hangs holds at most
-- $4 slots and the others' events still go out. Tenants with pending rows are walked through
-- forwards_tenant_due (one index probe each), not by reading every due row.
-- A deactivated tenant's rows are not claimed: they stay pending, no attempt spent, and go out
-- once it is active again (inbound is still stored meanwhile; nothing is sent for it).
WITH RECURSIVE waiting (tenant_id) AS ({{pending_tenants:forwards}}), room AS (
    SELECT w.tenant_id, $4::int - coalesce(busy.n, 0) AS free
      FROM waiting w
      JOIN tenants t ON t.id = w.tenant_id AND t.active
      LEFT JOIN unnest($5::uuid[], $6::int[]) AS busy (tenant_id, n)
        ON busy.tenant_id = w.tenant_id
     WHERE $4::int - coalesce(busy.n, 0) > 0
), candidates AS (
    SELECT c.id, c.run_after
      FROM room r
     CROSS JOIN LATERAL (
        SELECT f.id, f.run_after FROM forwards f
         WHERE f.tenant_id = r.tenant_id AND f.state = 'pending' AND f.run_after <= now()
         ORDER BY f.run_after
         LIMIT r.free
     ) c
     ORDER BY c.run_after
     LIMIT $1
), due AS (
    -- Locked here, not above (no FOR UPDATE beside the recursion); a row another worker took
    -- meanwhile is skipped, so this claim is only smaller.
    SELECT f.id FROM forwards f JOIN candidates c ON c.id = f.id
     WHERE f.state = 'pending' AND f.run_after <= now()
     FOR UPDATE OF f SKIP LOCKED
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
-- Seconds until the next forward this process could claim is due (NULL: none): pending rows
-- of active tenants, except those at their bound here ($1; a finishing POST wakes us for them).
WITH RECURSIVE waiting (tenant_id) AS ({{pending_tenants:forwards}})
-- Not greatest(0, ...): that is 0, not NULL, when nothing is pending (a poll every 20 ms).
SELECT extract(epoch FROM min(n.run_after) - now())::float8
  FROM waiting w
  JOIN tenants t ON t.id = w.tenant_id AND t.active
 CROSS JOIN LATERAL (
    SELECT f.run_after FROM forwards f
     WHERE f.tenant_id = w.tenant_id AND f.state = 'pending'
     ORDER BY f.run_after LIMIT 1
 ) n
 WHERE w.tenant_id <> ALL ($1::uuid[]);

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
