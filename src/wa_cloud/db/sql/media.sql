-- name: queue_inbound_media
-- Queued in the indexer's transaction, a batch at a time: the messages and their downloads
-- commit together. A media id seen again (a redelivered webhook) queues nothing; one wake-up
-- for the fetchers when anything was queued.
WITH queued AS (
    INSERT INTO media (tenant_id, phone_number_id, media_id, message_id, mime_type, sha256)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[])
    ON CONFLICT (phone_number_id, media_id) DO NOTHING
    RETURNING 1
)
SELECT pg_notify('{{channel.media}}', '') WHERE EXISTS (SELECT 1 FROM queued);

-- name: refuse_inbound_media
-- Media ids that cannot be Meta's (Meta's are digits): the messages are kept, their media marked
-- unavailable with the reason ($6), and nothing is ever fetched for them.
INSERT INTO media (tenant_id, phone_number_id, media_id, message_id, mime_type, state,
                   last_error)
SELECT t, p, m, msg, mt, 'failed', r
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[])
       AS u (t, p, m, msg, mt, r)
ON CONFLICT (phone_number_id, media_id) DO NOTHING;

-- name: claim_media
-- Due downloads with a lease: `run_after` moves to the lease's end, so a row whose worker died
-- is due again then, and the partial index on pending rows finds it.
-- Fair between tenants: one row per tenant per claim (its oldest), none of the tenants this
-- worker already downloads the most for ($3), so one tenant's slow or huge files hold at most
-- their own slots and never the others' downloads.
-- Tenants with pending rows are walked through media_tenant_due (one index probe each, as the
-- forwarder's claim does), so a tenant's long backlog is never read row by row.
WITH RECURSIVE waiting (tenant_id) AS ({{pending_tenants:media}}), due AS (
    SELECT d.id, d.run_after
      FROM waiting w
     CROSS JOIN LATERAL (
        SELECT m.id, m.run_after FROM media m
         WHERE m.tenant_id = w.tenant_id AND m.state = 'pending' AND m.run_after <= now()
         ORDER BY m.run_after
         LIMIT 1
     ) d
     WHERE w.tenant_id IS NOT NULL AND NOT (w.tenant_id = ANY ($3::uuid[]))
     ORDER BY d.run_after
     LIMIT $1
), locked AS (
    -- Locked here, not above (no FOR UPDATE beside the recursion); a row another worker took
    -- meanwhile is skipped, so this claim is only smaller.
    SELECT m.id FROM media m JOIN due ON due.id = m.id
     WHERE m.state = 'pending' AND m.run_after <= now()
     FOR UPDATE OF m SKIP LOCKED
), claimed AS (
    UPDATE media m
       SET attempts = m.attempts + 1,
           locked_until = now() + make_interval(secs => $2),
           run_after = now() + make_interval(secs => $2)
      FROM locked
     WHERE m.id = locked.id
    RETURNING m.id, m.tenant_id, m.phone_number_id, m.media_id, m.mime_type, m.sha256,
              m.attempts
)
SELECT c.id, c.tenant_id, c.phone_number_id, c.media_id, c.mime_type, c.sha256, c.attempts,
       n.phone_number_id IS NOT NULL AS registered, n.waba_id, n.access_token_enc,
       n.provider, n.gateway_url, n.gateway_instance
  FROM claimed c
  LEFT JOIN numbers n ON n.phone_number_id = c.phone_number_id AND n.tenant_id = c.tenant_id;

-- name: media_stored
UPDATE media
   SET state = 'stored', content = $2, size = $3, mime_type = coalesce($4, mime_type),
       sha256 = $5, locked_until = NULL, last_error = NULL
 WHERE id = $1 AND state = 'pending';

-- name: media_retry
UPDATE media
   SET run_after = now() + make_interval(secs => $3), locked_until = NULL, last_error = $2
 WHERE id = $1 AND state = 'pending';

-- name: media_failed
UPDATE media SET state = 'failed', locked_until = NULL, last_error = $2
 WHERE id = $1 AND state = 'pending';

-- name: tenant_media
-- A tenant's copy of a Meta media id; another tenant's is simply not found.
SELECT state, mime_type, sha256, size, content, last_error FROM media
 WHERE tenant_id = $1 AND media_id = $2
 ORDER BY (state = 'stored') DESC, created_at DESC
 LIMIT 1;
