-- The assistant's reply jobs (ai/replies.py). A job is claimed with a lease; its `attempts`
-- fences the finish, so a job whose lease ran out and was claimed again is finished once.

-- name: claim_replies
-- Due jobs: pending ones at their debounce, running ones whose worker died (lease ended).
-- A conversation's jobs go one at a time, oldest first (the previous answer belongs in the
-- next one's history). Fair between tenants: a tenant gets at most $5 of this worker's jobs,
-- counting those it already runs ($3 tenants, $4 their counts), so one tenant's slow model
-- never holds every slot.
WITH candidates AS (
    SELECT r.id, r.tenant_id,
           CASE WHEN r.state = 'pending' THEN r.due_at ELSE r.locked_until END AS due
      FROM replies r
     WHERE r.state IN ('pending', 'running')
       AND (CASE WHEN r.state = 'pending' THEN r.due_at ELSE r.locked_until END)
           <= clock_timestamp()
       AND NOT EXISTS (
           SELECT 1 FROM replies o
            WHERE o.contact_id = r.contact_id AND o.id < r.id
              AND o.state IN ('pending', 'running'))
), ranked AS (
    SELECT c.id, c.due,
           row_number() OVER (PARTITION BY c.tenant_id ORDER BY c.due) AS n,
           coalesce(b.running, 0) AS running
      FROM candidates c
      LEFT JOIN unnest($3::uuid[], $4::int[]) AS b (tenant_id, running)
             ON b.tenant_id = c.tenant_id
), chosen AS (
    SELECT r.id
      FROM replies r JOIN ranked k ON k.id = r.id
     WHERE k.n <= $5 - k.running
       -- checked again on the row as locked: another worker may have just claimed it
       AND r.state IN ('pending', 'running')
       AND (CASE WHEN r.state = 'pending' THEN r.due_at ELSE r.locked_until END)
           <= clock_timestamp()
     ORDER BY k.due
     LIMIT $1
     FOR UPDATE OF r SKIP LOCKED
)
UPDATE replies r
   SET state = 'running', attempts = r.attempts + 1,
       locked_until = clock_timestamp() + make_interval(secs => $2)
  FROM chosen
 WHERE r.id = chosen.id
RETURNING r.id, r.tenant_id, r.phone_number_id, r.contact_id, r.attempts, r.created_at;

-- name: extend_reply_lease
UPDATE replies SET locked_until = clock_timestamp() + make_interval(secs => $3)
 WHERE id = $1 AND state = 'running' AND attempts = $2;

-- name: next_reply_due
-- Seconds until the next job this worker could claim is due (NULL: none): not a job held back
-- by its conversation's earlier one, nor one of the tenants at their share here ($1). A
-- finishing job wakes the consumer for those; a NOTIFY for anything new.
SELECT extract(epoch FROM min(CASE WHEN r.state = 'pending' THEN r.due_at
                                   ELSE r.locked_until END) - clock_timestamp())::float8
  FROM replies r
 WHERE r.state IN ('pending', 'running')
   AND NOT (r.tenant_id = ANY ($1::uuid[]))
   AND NOT EXISTS (
       SELECT 1 FROM replies o
        WHERE o.contact_id = r.contact_id AND o.id < r.id
          AND o.state IN ('pending', 'running'));

-- name: reply_context
-- Everything a job decides with, in one read: the number and its tenant, the assistant's
-- configuration (this tenant's), and the conversation.
SELECT n.phone_number_id, n.waba_id, n.provider, n.access_token_enc, n.flagged_reason,
       n.gateway_url, n.gateway_instance,
       n.bot_enabled, n.verified_name, n.removed_at IS NULL AS registered,
       t.active AS tenant_active, t.name AS tenant_name, t.credits_balance,
       {{contact_view:c}}, c.paused_by,
       {{bot_config:b}}
  FROM numbers n
  JOIN tenants t ON t.id = n.tenant_id
  JOIN contacts c ON c.id = $2 AND c.phone_number_id = n.phone_number_id
                 AND c.tenant_id = n.tenant_id
  LEFT JOIN bots b ON b.phone_number_id = n.phone_number_id AND b.tenant_id = n.tenant_id
 WHERE n.phone_number_id = $1 AND n.tenant_id = $3;

-- name: burst_messages
-- The messages a job answers, oldest first, with their media as far as it got.
SELECT m.id, m.wamid, m.type, m.text, m.media_text, m.payload, m.created_at,
       md.state AS media_state, md.mime_type AS media_mime,
       -- the bytes only while they are still to be read
       CASE WHEN m.media_text IS NULL THEN md.content END AS media_content
  FROM messages m
  LEFT JOIN media md ON md.message_id = m.id
 WHERE m.reply_id = $1 AND m.tenant_id = $2
 -- Meta's time first (deliveries arrive reordered), to the second; then as they arrived.
 ORDER BY m.sent_at NULLS LAST, m.created_at, m.id;

-- name: conversation_history
-- The turns before this burst, newest first (the caller keeps the last N): both directions,
-- never a purged message, never a later burst's messages.
SELECT m.direction, coalesce(m.text, m.media_text) AS text
  FROM messages m
 WHERE m.contact_id = $1 AND m.tenant_id = $2 AND m.purged_at IS NULL
   AND m.status <> 'failed'
   AND (m.reply_id IS NULL OR m.reply_id < $3)
   AND (m.direction = 'out' OR m.reply_id IS DISTINCT FROM $3)
   AND coalesce(m.text, m.media_text) IS NOT NULL
 -- Stored order: Meta's timestamps are whole seconds, and ours are the turns as we took them.
 ORDER BY m.created_at DESC, m.id DESC
 LIMIT $4;

-- name: save_media_text
UPDATE messages SET media_text = $2 WHERE id = $1 AND purged_at IS NULL;

-- name: postpone_reply
-- Its media is still downloading: try again shortly, as the same burst.
-- Not an attempt: the claim's count is taken back, so waiting never gives the job up.
UPDATE replies SET state = 'pending', due_at = clock_timestamp() + make_interval(secs => $3),
                   locked_until = NULL, attempts = attempts - 1
 WHERE id = $1 AND state = 'running' AND attempts = $2
   -- a newer pending burst of the conversation would collide with this one
   AND NOT EXISTS (SELECT 1 FROM replies o WHERE o.contact_id = replies.contact_id
                     AND o.state = 'pending');

-- name: finish_reply
-- Only the holder of the lease finishes it (`attempts` as the fence): 0 rows, nothing else
-- of the finish may commit.
UPDATE replies SET state = $3, outcome = $4, finished_at = now(), locked_until = NULL
 WHERE id = $1 AND state = 'running' AND attempts = $2
RETURNING contact_id,
          EXISTS (SELECT 1 FROM replies o WHERE o.contact_id = replies.contact_id
                    AND o.state = 'pending') AS more;

-- name: notify_replies
SELECT pg_notify('{{channel.replies}}', '');

-- name: resume_all_contacts
WITH resumed AS (
    UPDATE contacts
       SET bot_paused = false, paused_until = NULL, paused_by = NULL, updated_at = now()
     WHERE phone_number_id = $1 AND tenant_id = $2 AND bot_paused
    RETURNING 1
)
SELECT count(*) FROM resumed;

-- name: owner_status
-- Paused conversations and today's counts (the day in the number's time zone, $3).
SELECT
  (SELECT coalesce(array_agg(coalesce(c.name, c.wa_id, c.user_id) ORDER BY c.updated_at DESC),
                   '{}')
     FROM (SELECT * FROM contacts c
            WHERE c.phone_number_id = $1 AND c.tenant_id = $2 AND c.bot_paused
              AND (c.paused_until IS NULL OR c.paused_until > now())
            ORDER BY c.updated_at DESC LIMIT 20) c) AS paused,
  (SELECT count(*) FROM messages m
    WHERE m.phone_number_id = $1 AND m.tenant_id = $2 AND m.direction = 'in'
      AND m.created_at >= (date_trunc('day', now() AT TIME ZONE $3) AT TIME ZONE $3)) AS inbound,
  (SELECT count(*) FROM messages m
    WHERE m.phone_number_id = $1 AND m.tenant_id = $2 AND m.author = 'bot'
      AND m.created_at >= (date_trunc('day', now() AT TIME ZONE $3) AT TIME ZONE $3)) AS replies;

-- name: lock_reply
-- The finish's fence: the job is still running under this claim (no row: it is not). With
-- whether the bot may still talk in the conversation: not paused meanwhile (the contact held
-- until this transaction ends, so a pause waits for it or is seen by it), still on, the tenant
-- still active. Not the tenant's row: the debit updates it in this transaction, and two
-- finishes sharing it first would deadlock upgrading.
SELECT NOT (c.bot_paused AND (c.paused_until IS NULL OR c.paused_until > now()))
       AND coalesce(n.bot_enabled, false) AND t.active AS open
  FROM replies r
  JOIN contacts c ON c.id = r.contact_id
  -- still this tenant's number: one removed and registered by another meanwhile is closed
  LEFT JOIN numbers n ON n.phone_number_id = r.phone_number_id AND n.tenant_id = r.tenant_id
                     AND n.removed_at IS NULL
  JOIN tenants t ON t.id = r.tenant_id
 WHERE r.id = $1 AND r.state = 'running' AND r.attempts = $2
   FOR UPDATE OF r FOR SHARE OF c;

-- name: reply_recipient
SELECT coalesce(wa_id, user_id) FROM contacts WHERE id = $1 AND tenant_id = $2;

-- name: number_conversations
SELECT count(*) FROM contacts WHERE phone_number_id = $1 AND tenant_id = $2;
