-- name: sender_number
-- The number a tenant sends from, with what a send needs; scoped by tenant (404 otherwise).
SELECT n.phone_number_id, n.waba_id, n.provider, n.access_token_enc, n.throughput_mps,
       n.flagged_reason, t.active, n.gateway_url, n.gateway_instance
  FROM numbers n JOIN tenants t ON t.id = n.tenant_id
 WHERE n.phone_number_id = $1 AND n.tenant_id = $2 AND n.removed_at IS NULL;

-- name: recipient_contact
SELECT id, last_inbound_at, window_closed_at FROM contacts
 WHERE phone_number_id = $1 AND tenant_id = $3 AND (wa_id = $2 OR user_id = $2)
 LIMIT 1;

-- name: find_idempotent
SELECT id, status FROM messages WHERE tenant_id = $1 AND idempotency_key = $2;

-- name: enqueue_message
-- $12: who wrote it, 'human' (the API: a person or their system) or 'bot' (the assistant,
-- with the reply job $13 that answered).
INSERT INTO messages (tenant_id, phone_number_id, contact_id, direction, type, text, payload,
                      request, recipient, status, idempotency_key, fallback_template, run_after,
                      context_wamid, author, reply_id)
VALUES ($1, $2, $3, 'out', $4, $5, $6, $7, $8, 'queued', $9, $10, now(), $11, $12, $13)
ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, status;

-- name: notify_outbox
SELECT pg_notify('{{channel.outbox}}', $1);

-- name: ensure_pacing
INSERT INTO pacing (phone_number_id) VALUES ($1) ON CONFLICT DO NOTHING;

-- name: claim_number
-- The number whose next send slot comes first among those with due messages. Its pacing row
-- stays locked for this claim only: one worker reserves a number's slots at a time. LATERAL
-- with LIMIT 1 (not EXISTS): with a sudden backlog the planner's statistics lag and an EXISTS
-- became a scan of every queued row.
SELECT p.phone_number_id, p.next_slot, p.factor, n.throughput_mps, n.provider,
       n.access_token_enc, n.tenant_id, n.flagged_at, n.gateway_url, n.gateway_instance,
       clock_timestamp() AS now
  FROM pacing p JOIN numbers n ON n.phone_number_id = p.phone_number_id
  JOIN tenants t ON t.id = n.tenant_id AND t.active
  CROSS JOIN LATERAL (SELECT 1 FROM messages m
                       WHERE m.phone_number_id = p.phone_number_id AND m.direction = 'out'
                         AND m.status = 'queued' AND m.run_after <= now()
                         AND {{claimable:m}}
                       LIMIT 1) AS due
 WHERE n.removed_at IS NULL AND p.next_slot <= now() + make_interval(secs => $1)
   -- A flagged number (its token did not open, or its sending crashed) rests a while.
   AND (n.flagged_at IS NULL OR n.flagged_at < now() - interval '5 minutes')
 ORDER BY p.next_slot
 LIMIT 1
 FOR UPDATE OF p SKIP LOCKED;

-- name: claim_messages
-- $5: the priority claimed (0 conversations, 1 campaigns: claimed only after the 0s). In the
-- order they were queued (seq breaks the tie of one transaction's created_at), and returned
-- in that order: an UPDATE's RETURNING has none of its own, and the slots follow the rows.
-- held_until: set when a conversation message queued before the row for the same recipient,
-- not in this claim, is in flight or went back to the queue (migration 0024): the row must not
-- overtake it, and goes back to the queue until then (a message in flight: half a second, to
-- look again; the clock's time, not the transaction's, which may have waited on a lock). Only
-- the nearest one ahead is read: whatever it waits for, it waits too.
WITH claimed AS (
    UPDATE messages
       SET status = 'sending', lease_token = $3,
           locked_until = now() + make_interval(secs => $4), attempts = attempts + 1
     WHERE id IN (SELECT id FROM messages
                   WHERE phone_number_id = $1 AND direction = 'out' AND status = 'queued'
                     AND run_after <= now() AND priority = $5 AND {{claimable:messages}}
                   ORDER BY run_after, created_at, seq NULLS FIRST
                   LIMIT $2
                   FOR UPDATE SKIP LOCKED)
    RETURNING id, tenant_id, recipient, request, fallback_template, attempts, contact_id, type,
              run_after, created_at, seq
)
SELECT c.id, c.tenant_id, c.recipient, c.request, c.fallback_template, c.attempts,
       c.contact_id, c.type, ahead.held_until
  FROM claimed c
  LEFT JOIN LATERAL (
      SELECT CASE WHEN e.status = 'queued' THEN greatest(e.run_after, clock_timestamp())
                  ELSE clock_timestamp() + interval '0.5 seconds' END AS held_until
        FROM messages e
       WHERE e.phone_number_id = $1 AND e.recipient = c.recipient
         AND e.tenant_id = c.tenant_id AND e.direction = 'out' AND e.priority = 0
         AND (e.status = 'sending' OR (e.status = 'queued' AND e.run_after > e.created_at))
         AND e.created_at <= c.created_at
         AND (e.created_at < c.created_at OR coalesce(e.seq, 0) < coalesce(c.seq, 0))
         AND e.id NOT IN (SELECT id FROM claimed)
       ORDER BY e.created_at DESC, e.seq DESC
       LIMIT 1) AS ahead ON true
 ORDER BY c.run_after, c.created_at, c.seq NULLS FIRST;

-- name: pair_state
SELECT recipient, tat, penalty_until FROM pair_pacing
 WHERE phone_number_id = $1 AND recipient = ANY($2::text[])
 FOR UPDATE;

-- name: save_pair_state
INSERT INTO pair_pacing (phone_number_id, recipient, tat)
SELECT $1, r, t FROM unnest($2::text[], $3::timestamptz[]) AS u(r, t)
ON CONFLICT (phone_number_id, recipient) DO UPDATE SET tat = excluded.tat;

-- name: reserve_slots
UPDATE pacing SET next_slot = $2, factor = least(1.0, factor * 1.01 + 0.001),
                  updated_at = now()
 WHERE phone_number_id = $1;

-- name: postpone_messages
UPDATE messages SET status = 'queued', run_after = u.at, lease_token = NULL,
                    locked_until = NULL, attempts = attempts - 1, dispatched_at = NULL
  FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, at)
 WHERE messages.id = u.id AND messages.lease_token = $3;

-- name: mark_dispatched
-- Only under the lease that claimed the row, while it holds: a send whose lease ran out may
-- have been queued again and claimed by another worker, and must not leave twice.
UPDATE messages m SET dispatched_at = now()
  FROM unnest($1::uuid[], $2::uuid[]) AS u(id, lease)
 WHERE m.id = u.id AND m.status = 'sending' AND m.lease_token = u.lease
   AND m.locked_until > now()
RETURNING m.id;

-- name: undo_dispatch
-- Marked, then found too late to send: back to the queue as if never marked (it did not leave).
UPDATE messages SET status = 'queued', run_after = now(), dispatched_at = NULL,
                    lease_token = NULL, locked_until = NULL, attempts = attempts - 1
 WHERE id = $1 AND lease_token = $2 AND status = 'sending';

-- name: record_accepted
-- Meta took it: keep the wamid; a status webhook that came first already tells how far it got.
-- A wamid another message of the number already has (a gateway's answer is a tenant's) is not
-- kept: the unique index would fail every tenant's rows written with it.
UPDATE messages m
   SET wamid = CASE WHEN EXISTS (SELECT 1 FROM messages o
                                  WHERE o.phone_number_id = m.phone_number_id
                                    AND o.wamid = u.wamid AND o.id <> m.id)
                    THEN m.wamid ELSE u.wamid END,
       accepted_at = now(), lease_token = NULL, locked_until = NULL,
       request = u.request, used_fallback = u.fallback,
       type = u.type,
       status = coalesce(
           (SELECT s.status FROM statuses s
             WHERE s.phone_number_id = m.phone_number_id AND s.wamid = u.wamid
             ORDER BY (s.status = 'failed') DESC, wa_status_rank(s.status) DESC LIMIT 1),
           'accepted'),
       errors = coalesce(
           (SELECT s.errors FROM statuses s
             WHERE s.phone_number_id = m.phone_number_id AND s.wamid = u.wamid
               AND s.status = 'failed'),
           '[]'::jsonb)
  FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::boolean[], $5::text[], $6::uuid[])
       AS u(id, wamid, request, fallback, type, lease)
 -- Under our lease; or reported `unknown` after the lease ran out mid-request (only the
 -- dispatched row can be it): Meta's answer is better news than unknown.
 WHERE m.id = u.id AND m.dispatched_at IS NOT NULL
   AND ((m.status = 'sending' AND m.lease_token = u.lease)
        OR (m.status = 'unknown' AND m.lease_token IS NULL));

-- name: record_outcome
-- Failed for good, unknown, or back to the queue with a delay.
UPDATE messages m
   SET status = u.status, errors = u.errors::jsonb, last_error = u.error,
       run_after = CASE WHEN u.status = 'queued' THEN now() + make_interval(secs => u.delay)
                        ELSE run_after END,
       dispatched_at = CASE WHEN u.status = 'queued' THEN NULL ELSE dispatched_at END,
       lease_token = NULL, locked_until = NULL
  -- errors travel as JSON text: asyncpg would read a list inside an array as a dimension.
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::uuid[])
       AS u(id, status, errors, error, delay, lease)
 WHERE m.id = u.id AND m.status = 'sending' AND m.lease_token = u.lease;

-- name: slow_number
-- Meta said 130429: this number goes slower for a while; claims restore the factor slowly.
UPDATE pacing SET factor = greatest(0.2, factor * 0.7),
                  next_slot = greatest(next_slot, now()) + interval '1 second'
 WHERE phone_number_id = $1;

-- name: penalise_pair
UPDATE pair_pacing SET tat = greatest(tat, now()) + make_interval(secs => $3)
 WHERE phone_number_id = $1 AND recipient = $2;

-- name: recover_expired_sends
-- Leases that ran out: never dispatched means never sent (queue again); dispatched means Meta
-- may have it (unknown, never re-sent blindly).
UPDATE messages
   SET status = CASE WHEN dispatched_at IS NULL THEN 'queued' ELSE 'unknown' END,
       run_after = now(), lease_token = NULL, locked_until = NULL,
       errors = CASE WHEN dispatched_at IS NULL THEN errors ELSE
           jsonb_build_array(jsonb_build_object(
               'code', NULL, 'title', 'Outcome unknown',
               'message', 'The worker stopped after sending; Meta may or may not have it.'))
           END
 WHERE direction = 'out' AND status = 'sending' AND locked_until < now()
RETURNING id, status;

-- name: close_window_for
UPDATE contacts SET window_closed_at = greatest(window_closed_at, now()), updated_at = now()
 WHERE id = $1;

-- name: get_message
SELECT id, wamid, phone_number_id, recipient, direction, type, status, errors, created_at,
       accepted_at, status_at, used_fallback, request, text, pricing, attempts,
       idempotency_key
  FROM messages WHERE id = $1 AND tenant_id = $2;

-- name: cached_template
SELECT name, language, status, category, parameter_format, components, fetched_at, stale
  FROM templates WHERE waba_id = $1 AND name = $2 AND language = $3;

-- name: save_template
INSERT INTO templates (waba_id, name, language, template_id, status, category,
                       parameter_format, components, rejected_reason, quality, fetched_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now())
ON CONFLICT (waba_id, name, language) DO UPDATE
   SET template_id = excluded.template_id, status = excluded.status,
       category = excluded.category, parameter_format = excluded.parameter_format,
       components = excluded.components, rejected_reason = excluded.rejected_reason,
       quality = excluded.quality, stale = false, fetched_at = now();

-- name: update_template_status
-- $3 NULL: every language of the name (Meta names it; an older body may not).
UPDATE templates SET status = $4, rejected_reason = $5, stale = true
 WHERE waba_id = $1 AND name = $2 AND ($3::text IS NULL OR language = $3);

-- name: update_template_quality
UPDATE templates SET quality = $4
 WHERE waba_id = $1 AND name = $2 AND ($3::text IS NULL OR language = $3);

-- name: template_number
-- The number `wa-cloud templates` reaches its WABA through (the operator's command: no tenant).
SELECT phone_number_id, waba_id, provider, access_token_enc FROM numbers
 WHERE phone_number_id = $1 AND removed_at IS NULL;

-- name: forget_template
DELETE FROM templates WHERE waba_id = $1 AND name = $2;

-- name: outbox_next_wake
-- Seconds until there may be something to claim: per number, the later of its next slot (less
-- the lookahead) and its earliest queued message.
SELECT extract(epoch FROM min(greatest(p.next_slot - make_interval(secs => $1), q.run_after))
               - now())::float8
  FROM pacing p JOIN numbers n ON n.phone_number_id = p.phone_number_id AND n.removed_at IS NULL
  JOIN tenants t ON t.id = n.tenant_id AND t.active
  CROSS JOIN LATERAL (SELECT m.run_after FROM messages m
                       WHERE m.phone_number_id = p.phone_number_id AND m.direction = 'out'
                         AND m.status = 'queued' AND {{claimable:m}}
                       ORDER BY m.run_after LIMIT 1) AS q;

-- name: contact_windows
SELECT id, last_inbound_at, window_closed_at FROM contacts WHERE id = ANY($1::bigint[]);

-- name: flag_number
-- The number cannot send: its queued messages fail with the reason (they would only wait for
-- a fix nobody can promise), the number is flagged, and the API says why.
WITH flagged AS (
    UPDATE numbers SET flagged_reason = $2, flagged_at = now(), updated_at = now()
     WHERE phone_number_id = $1
    RETURNING phone_number_id
)
UPDATE messages
   SET status = 'failed', last_error = $2, lease_token = NULL, locked_until = NULL,
       errors = jsonb_build_array(jsonb_build_object(
           'code', NULL, 'title', 'Number unavailable', 'message', $2))
 WHERE phone_number_id = $1 AND direction = 'out'
   AND (status = 'queued' OR (status = 'sending' AND dispatched_at IS NULL))
RETURNING id;

-- name: unflag_number
UPDATE numbers SET flagged_reason = NULL, flagged_at = NULL, updated_at = now()
 WHERE phone_number_id = $1 AND flagged_at IS NOT NULL;
