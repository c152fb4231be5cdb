-- Campaigns: broadcasts, their recipients, opt-outs.

-- name: recipient_contacts
-- The contacts (and their windows) of some recipients on a number.
SELECT id, wa_id, last_inbound_at, window_closed_at FROM contacts
 WHERE phone_number_id = $1 AND tenant_id = $2 AND wa_id = ANY($3::text[]);

-- name: opted_out_of
-- The tenant's own opt-outs: a number registered again by another tenant starts clean.
SELECT recipient FROM opt_outs
 WHERE phone_number_id = $1 AND tenant_id = $3 AND recipient = ANY($2::text[]);

-- name: insert_broadcast
INSERT INTO broadcasts (tenant_id, phone_number_id, name, template, message, category, status,
                        run_at, estimate)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING id;

-- name: insert_broadcast_recipients
-- The sendable lines pending, the others skipped with their reason (for recipients.csv).
INSERT INTO broadcast_recipients (broadcast_id, recipient, line, variables, state, reason)
SELECT $1, u.recipient, u.line, u.variables::jsonb,
       CASE WHEN u.reason IS NULL THEN 'pending' ELSE 'skipped' END, u.reason
  FROM unnest($2::text[], $3::int[], $4::text[], $5::text[]) AS u (recipient, line, variables, reason);

-- name: notify_campaigns
SELECT pg_notify('{{channel.campaigns}}', $1);

-- name: get_broadcast
SELECT id, phone_number_id, name, template, message, category, status, paused_reason,
       held_reason, run_at, estimate, created_at, finished_at
  FROM broadcasts WHERE id = $1 AND tenant_id = $2;

-- name: list_broadcasts
SELECT id, phone_number_id, name, template, message, category, status, paused_reason,
       held_reason, run_at, estimate, created_at, finished_at
  FROM broadcasts
 WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
 ORDER BY created_at DESC, id DESC
 LIMIT $4;

-- name: broadcast_counts
-- Each recipient once, by where it got: its message's status once it is in the outbox (a send
-- whose outcome is unknown is still on its way: settled or sent again, see the runner). For a
-- page of campaigns in one statement.
SELECT r.broadcast_id, count(*) AS total,
       count(*) FILTER (WHERE r.state = 'pending'
                           OR m.status IN ('queued', 'sending', 'unknown')) AS queued,
       count(*) FILTER (WHERE m.status IN ('accepted', 'sent')) AS sent,
       count(*) FILTER (WHERE m.status = 'delivered') AS delivered,
       count(*) FILTER (WHERE m.status IN ('read', 'played')) AS read,
       count(*) FILTER (WHERE m.status = 'failed') AS failed,
       count(*) FILTER (WHERE r.state = 'skipped') AS skipped,
       count(*) FILTER (WHERE m.pricing -> 'billable' = 'true'::jsonb) AS billable
  FROM broadcast_recipients r LEFT JOIN messages m ON m.id = r.message_id
 WHERE r.broadcast_id = ANY($1::uuid[])
 GROUP BY r.broadcast_id;

-- name: broadcast_failures
SELECT coalesce(m.errors -> 0 ->> 'code', m.status) AS code, count(*) AS n
  FROM broadcast_recipients r JOIN messages m ON m.id = r.message_id
 WHERE r.broadcast_id = $1 AND m.status = 'failed'
 GROUP BY 1 ORDER BY 2 DESC;

-- name: broadcast_skips
SELECT reason, count(*) AS n FROM broadcast_recipients
 WHERE broadcast_id = $1 AND state = 'skipped'
 GROUP BY 1 ORDER BY 2 DESC;

-- name: broadcast_billed
-- What Meta said it bills, by the category its pricing names, for the actual cost: counted per
-- recipient prefix ($2: the price table's longest calling code, all a price depends on).
SELECT left(r.recipient, $2) AS prefix, m.pricing ->> 'category' AS category, count(*) AS n
  FROM broadcast_recipients r JOIN messages m ON m.id = r.message_id
 WHERE r.broadcast_id = $1 AND m.pricing -> 'billable' = 'true'::jsonb
 GROUP BY 1, 2;

-- name: broadcast_recipient_rows
SELECT r.line, r.recipient, r.state, r.reason, m.status, m.wamid,
       m.errors -> 0 ->> 'code' AS error_code, m.errors -> 0 ->> 'title' AS error_title
  FROM broadcast_recipients r LEFT JOIN messages m ON m.id = r.message_id
 WHERE r.broadcast_id = $1 AND r.line > $2
 ORDER BY r.line
 LIMIT $3;

-- name: lock_broadcast
SELECT id, status, phone_number_id FROM broadcasts WHERE id = $1 AND tenant_id = $2 FOR UPDATE;

-- name: set_broadcast_status
UPDATE broadcasts
   SET status = $2, paused_reason = $3, held_reason = NULL, locked_until = NULL,
       finished_at = CASE WHEN $2 IN ('done', 'cancelled') THEN now() END
 WHERE id = $1;

-- name: stop_broadcasts
-- The one way campaigns stop ($2: 'paused' or 'cancelled', $3: why), at once: what they queued
-- and the sender has not claimed goes back (a row the sender holds is not touched), their
-- recipients pending again when paused, skipped ($4: the reason shown) when cancelled.
WITH stopped AS (
    UPDATE broadcasts
       SET status = $2, paused_reason = $3, held_reason = NULL, locked_until = NULL,
           finished_at = CASE WHEN $2 = 'cancelled' THEN now() END
     WHERE id = ANY($1::uuid[])
    RETURNING id
), gone AS (
    DELETE FROM messages m USING stopped
     WHERE m.broadcast_id = stopped.id AND m.status = 'queued' AND m.direction = 'out'
    RETURNING m.id
), withdrawn AS (
    UPDATE broadcast_recipients r
       SET state = CASE WHEN $2 = 'cancelled' THEN 'skipped' ELSE 'pending' END,
           reason = CASE WHEN $2 = 'cancelled' THEN $4 END, message_id = NULL
      FROM gone WHERE r.message_id = gone.id
    RETURNING r.broadcast_id
)
-- (Disjoint from `withdrawn`: these were pending before this statement.)
UPDATE broadcast_recipients r SET state = 'skipped', reason = $4
  FROM stopped
 WHERE $2 = 'cancelled' AND r.broadcast_id = stopped.id AND r.state = 'pending';

-- name: number_broadcasts
-- A number's campaigns that may still send ($3: paused ones too), for stop_broadcasts.
SELECT id FROM broadcasts
 WHERE phone_number_id = $1 AND tenant_id = $2
   AND (status IN ('scheduled', 'running') OR ($3 AND status = 'paused'));

-- name: template_broadcasts
-- The tenant's campaigns sending this template from the WABA's numbers ($3 NULL: any
-- language), for stop_broadcasts.
SELECT b.id FROM broadcasts b
  JOIN numbers n ON n.phone_number_id = b.phone_number_id AND n.tenant_id = b.tenant_id
 WHERE n.waba_id = $1 AND b.tenant_id = $4 AND b.status IN ('scheduled', 'running')
   AND b.template ->> 'name' = $2 AND ($3::text IS NULL OR b.template ->> 'language' = $3);

-- name: claim_broadcast
-- The campaign whose next feed is due first; its row stays locked for this feed only. A number
-- sends one campaign at a time, its oldest (they share its throughput anyway): the others wait
-- in line, so a tenant's thousand campaigns cost the runner one feed each turn, not a thousand.
-- One the messaging limit holds does not hold the line (the next may reach known recipients).
-- A number no longer the campaign's tenant's (removed, taken by another tenant) is reported
-- so the campaign pauses: it never sends on someone else's number.
SELECT b.id, b.tenant_id, b.phone_number_id, b.template, b.message, b.category, b.status,
       b.held_reason, n.throughput_mps, n.quality_rating, n.messaging_limit, n.provider, t.active,
       CASE WHEN n.tenant_id = b.tenant_id THEN n.removed_at
            ELSE coalesce(n.removed_at, now()) END AS removed_at
  FROM broadcasts b JOIN numbers n ON n.phone_number_id = b.phone_number_id
  JOIN tenants t ON t.id = b.tenant_id
 WHERE b.status IN ('scheduled', 'running') AND b.run_at <= now()
   AND coalesce(b.locked_until, b.run_at) <= now()
   AND {{first_in_line:b}}
 ORDER BY coalesce(b.locked_until, b.run_at)
 LIMIT 1
 FOR UPDATE OF b SKIP LOCKED;

-- name: campaigns_next_wake
-- When claim_broadcast may find a campaign: the next feed of a number's first in line, or a
-- scheduled one's start.
SELECT extract(epoch FROM min(coalesce(b.locked_until, b.run_at)) - now())::float8
  FROM broadcasts b
 WHERE b.status IN ('scheduled', 'running')
   AND {{first_in_line:b}};

-- name: next_feed
UPDATE broadcasts SET status = CASE WHEN status = 'scheduled' THEN 'running' ELSE status END,
       held_reason = $3,
       locked_until = now() + make_interval(secs => $2)
 WHERE id = $1;

-- name: broadcast_in_outbox
SELECT count(*) FROM messages WHERE broadcast_id = $1 AND status = 'queued';

-- name: broadcast_recent_failures
-- Of the campaign's last finished sends, how many failed for the reasons that say Meta or
-- the recipients push back (spam signals, opt-outs, an experiment holding marketing), and how
-- many because its template is gone (paused, disabled, deleted): the rest would fail too.
SELECT count(*) FILTER (WHERE code IN ('131049', '131050', '130472')) AS pushback,
       count(*) AS finished,
       string_agg(DISTINCT code, ',') FILTER (WHERE code IN ('131049', '131050', '130472'))
           AS codes,
       string_agg(DISTINCT code, ',') FILTER (WHERE code IN ('132001', '132015', '132016'))
           AS template_gone
  FROM (SELECT m.errors -> 0 ->> 'code' AS code
          FROM messages m
         WHERE m.broadcast_id = $1 AND m.status NOT IN ('queued', 'sending')
         ORDER BY m.created_at DESC
         LIMIT $2) AS recent;

-- name: opt_out_refusals
-- 131050 is Meta saying the user stopped marketing messages: they are opted out here too.
INSERT INTO opt_outs (phone_number_id, recipient, tenant_id, source, detail)
SELECT m.phone_number_id, m.recipient, m.tenant_id, 'meta_131050', 'error 131050'
  FROM messages m
 WHERE m.broadcast_id = $1 AND m.status = 'failed' AND m.errors @> '[{"code": 131050}]'
ON CONFLICT DO NOTHING;

-- name: pending_recipients
SELECT line, recipient, variables FROM broadcast_recipients
 WHERE broadcast_id = $1 AND state = 'pending'
 ORDER BY line
 LIMIT $2;

-- name: recipients_messaged_today
-- Of these recipients, those the number sent a business-initiated (template) message in the
-- last 24 hours: a campaign reaching them again is no new recipient for the messaging limit.
SELECT DISTINCT recipient FROM messages
 WHERE phone_number_id = $1 AND direction = 'out' AND type = 'template'
   AND created_at > now() - interval '24 hours' AND recipient = ANY($2::text[]);

-- name: unique_recipients_today
SELECT count(DISTINCT recipient) FROM messages
 WHERE phone_number_id = $1 AND direction = 'out' AND type = 'template'
   AND created_at > now() - interval '24 hours';

-- name: enqueue_campaign_messages
-- A feed's sends, with their recipients marked queued in the same statement: a worker that
-- dies mid-feed leaves neither, so no recipient is queued twice or lost.
WITH sent AS (
    INSERT INTO messages (tenant_id, phone_number_id, contact_id, direction, type, text,
                          payload, request, recipient, status, run_after, author,
                          broadcast_id, priority)
    SELECT $1, $2, u.contact_id, 'out', u.kind, u.text, u.request::jsonb, u.request::jsonb,
           u.recipient, 'queued', now(), 'campaign', $3, 1
      FROM unnest($4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[])
           AS u (recipient, contact_id, kind, text, request)
    RETURNING id, recipient
)
UPDATE broadcast_recipients r SET state = 'queued', message_id = sent.id
  FROM sent
 WHERE r.broadcast_id = $3 AND r.recipient = sent.recipient AND r.state = 'pending';

-- name: skip_recipients
UPDATE broadcast_recipients r SET state = 'skipped', reason = u.reason
  FROM unnest($2::text[], $3::text[]) AS u (recipient, reason)
 WHERE r.broadcast_id = $1 AND r.recipient = u.recipient AND r.state = 'pending';

-- name: finish_broadcast
-- Every recipient handed to the outbox or skipped: the campaign is done sending.
UPDATE broadcasts SET status = 'done', finished_at = now(), held_reason = NULL,
       locked_until = NULL
 WHERE id = $1 AND status IN ('scheduled', 'running')
   AND NOT EXISTS (SELECT 1 FROM broadcast_recipients
                    WHERE broadcast_id = $1 AND state = 'pending');

-- name: list_opt_outs
SELECT recipient, source, detail, created_at FROM opt_outs
 WHERE phone_number_id = $1 AND tenant_id = $2
   AND ($3::text IS NULL OR recipient > $3)
 ORDER BY recipient
 LIMIT $4;

-- name: add_opt_out
INSERT INTO opt_outs (phone_number_id, recipient, tenant_id, source, detail)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (phone_number_id, recipient) DO NOTHING
RETURNING recipient;

-- name: remove_opt_out
DELETE FROM opt_outs WHERE phone_number_id = $1 AND recipient = $2 AND tenant_id = $3
RETURNING recipient;

-- name: add_opt_outs
-- Opt-outs learnt from the index (a keyword, Meta's user_preferences), a batch at once.
INSERT INTO opt_outs (phone_number_id, recipient, tenant_id, source, detail)
SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::text[])
ON CONFLICT (phone_number_id, recipient) DO NOTHING;

-- name: remove_opt_outs
-- A user_preferences "resume" lifts only what Meta's own preference had set; a start word
-- only what a stop word had ($3: the source lifted).
DELETE FROM opt_outs o
 USING unnest($1::text[], $2::text[]) AS u (phone_number_id, recipient)
 WHERE o.phone_number_id = u.phone_number_id AND o.recipient = u.recipient
   AND o.source = $3;

-- name: update_number_quality
-- Meta's phone_number_quality_update names the number by its display number, within the WABA
-- its source speaks for (and the tenant that owns it there).
UPDATE numbers
   SET messaging_limit = coalesce($4, messaging_limit),
       quality_rating = coalesce($5, quality_rating), updated_at = now()
 WHERE waba_id = $1 AND tenant_id = $2 AND removed_at IS NULL
   AND regexp_replace(display_phone_number, '[^0-9]', '', 'g') = $3
RETURNING phone_number_id;

-- name: number_timezone
-- The number's time zone is its assistant's, this tenant's (default UTC).
SELECT timezone FROM bots WHERE phone_number_id = $1 AND tenant_id = $2;

-- name: set_messaging_limit
UPDATE numbers SET messaging_limit = $2 WHERE phone_number_id = $1;

-- name: settle_unknown_campaign_sends
-- Campaign sends a dead worker left `unknown` that Meta's statuses name (their callback data,
-- `sending_line`): Meta has them. The wamid and the furthest status are taken from the echo
-- (`failed` wins, as in advance_message_statuses); later statuses then find the row by wamid.
-- The echo is the send's own: its request carries the callback data it went with.
WITH lost AS (
    SELECT m.id, m.phone_number_id, m.tenant_id,
           m.request ->> 'biz_opaque_callback_data' AS callback
      FROM messages m
     WHERE m.status = 'unknown' AND m.broadcast_id IS NOT NULL AND m.wamid IS NULL
), echoed AS (
    SELECT DISTINCT ON (l.id) l.id, s.wamid, s.status, s.occurred_at, s.errors, s.pricing
      FROM lost l
      JOIN statuses s ON s.phone_number_id = l.phone_number_id
                     AND s.biz_opaque_callback_data = l.callback AND s.tenant_id = l.tenant_id
     ORDER BY l.id, s.status = 'failed' DESC, wa_status_rank(s.status) DESC
)
UPDATE messages m
   SET wamid = e.wamid, status = e.status, status_at = e.occurred_at,
       accepted_at = coalesce(m.accepted_at, e.occurred_at),
       errors = CASE WHEN e.status = 'failed' THEN e.errors ELSE '[]'::jsonb END,
       pricing = coalesce(e.pricing, m.pricing)
  FROM echoed e
 WHERE m.id = e.id AND m.status = 'unknown' AND m.wamid IS NULL
   AND NOT EXISTS (SELECT 1 FROM messages o
                    WHERE o.phone_number_id = m.phone_number_id AND o.wamid = e.wamid)
RETURNING m.id;

-- name: resend_unheard_campaign_sends
-- Campaign sends still `unknown` after the grace ($1 seconds) with no status naming them: Meta
-- never had them (it reports every message it accepts), so they go again, only while their
-- campaign may send. `run_after` is when the send was claimed for its (lost) attempt.
WITH again AS (
    UPDATE messages m
       SET status = 'queued', run_after = now(), dispatched_at = NULL, lease_token = NULL,
           locked_until = NULL, errors = '[]'::jsonb, last_error = NULL
      FROM broadcasts b
     WHERE m.status = 'unknown' AND m.broadcast_id IS NOT NULL AND m.wamid IS NULL
       AND m.run_after < now() - make_interval(secs => $1)
       AND b.id = m.broadcast_id AND b.status IN ('running', 'done')
       AND NOT EXISTS (SELECT 1 FROM statuses s
                        WHERE s.phone_number_id = m.phone_number_id
                          AND s.biz_opaque_callback_data
                              = m.request ->> 'biz_opaque_callback_data')
    RETURNING m.phone_number_id
)
SELECT phone_number_id, count(*) AS sends FROM again GROUP BY phone_number_id;
