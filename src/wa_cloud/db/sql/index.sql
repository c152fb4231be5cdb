-- name: number_owners
-- With the events each owner's webhook takes (none: empty), so indexing spends no statement on
-- forwarding for tenants without a webhook.
-- With what the assistant needs to schedule replies: whether it is on, its debounce and the
-- owner phones (whose commands it takes even while it is off).
SELECT n.phone_number_id, n.waba_id, n.tenant_id, n.app_id, n.provider, n.gateway_instance,
       coalesce(w.events, '{}') AS forward_events, n.bot_enabled,
       coalesce(b.debounce_seconds, $3)::float8 AS debounce_seconds,
       coalesce(b.owner_phones, '{}') AS owner_phones, n.opt_out_words
  FROM numbers n
  LEFT JOIN tenant_webhooks w ON w.tenant_id = n.tenant_id
  LEFT JOIN bots b ON b.phone_number_id = n.phone_number_id AND b.tenant_id = n.tenant_id
 WHERE (n.phone_number_id = ANY($1::text[]) OR n.waba_id = ANY($2::text[]))
   -- A removed number speaks for nobody: what Meta still sends for it is orphaned (and adopted
   -- if it is registered again within Meta's retry horizon).
   AND n.removed_at IS NULL;

-- Every statement below takes a whole claimed batch as parallel arrays (`unnest`): one
-- statement per kind of row, whatever the batch size. JSON goes in as text[] (json.dumps in
-- Python) and is cast here: an array parameter of jsonb would read a list value (a status's
-- errors) as another dimension of the array.

-- name: find_contacts
-- The contact each sender already is ($5: the caller's index for it; NULL: none yet),
-- preferring the one that matches by wa_id. Two lookups, each on a unique index led by
-- (number, identifier); the tenant is compared with IS NOT DISTINCT FROM (the same, as
-- tenant_id is NOT NULL) so that no index led by the tenant looks as good to a planner
-- without statistics (0009). The batch holds the contacts' advisory locks.
SELECT k.n, f.id
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[])
       AS k (tenant_id, phone_number_id, wa_id, user_id, n)
 CROSS JOIN LATERAL (
    SELECT coalesce(
        (SELECT c.id FROM contacts c
          WHERE c.phone_number_id = k.phone_number_id AND c.wa_id = k.wa_id
            AND c.tenant_id IS NOT DISTINCT FROM k.tenant_id),
        (SELECT c.id FROM contacts c
          WHERE c.phone_number_id = k.phone_number_id AND c.user_id = k.user_id
            AND c.tenant_id IS NOT DISTINCT FROM k.tenant_id)) AS id
 ) f;

-- name: update_contacts
-- Fill in identifiers we did not know yet; the window only ever moves forward.
UPDATE contacts c
   SET wa_id = coalesce(c.wa_id, u.wa_id), user_id = coalesce(c.user_id, u.user_id),
       parent_user_id = coalesce(u.parent_user_id, c.parent_user_id),
       username = coalesce(u.username, c.username), name = coalesce(u.name, c.name),
       last_inbound_at = greatest(c.last_inbound_at, u.last_inbound_at),
       updated_at = now()
  FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
              $7::timestamptz[])
       AS u (id, wa_id, user_id, parent_user_id, username, name, last_inbound_at)
 WHERE c.id = u.id;

-- name: insert_contacts
-- A contact another writer stored meanwhile is not returned (the caller fails the batch).
INSERT INTO contacts (tenant_id, phone_number_id, wa_id, user_id, parent_user_id, username, name,
                      last_inbound_at)
SELECT t, p, w, u, pu, un, nm, li
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
              $7::text[], $8::timestamptz[])
       AS k (t, p, w, u, pu, un, nm, li)
ON CONFLICT DO NOTHING
RETURNING id, tenant_id, phone_number_id, wa_id, user_id;

-- name: insert_inbound_messages
-- A wamid already stored (a redelivery, or twice in this batch) is not inserted again.
INSERT INTO messages (tenant_id, phone_number_id, contact_id, wamid, direction, type, text,
                      payload, context_wamid, status, sent_at, delivery_id)
SELECT t, p, c, w, 'in', ty, tx, pl::jsonb, cw, 'received', sa, d
  FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[],
              $7::text[], $8::text[], $9::timestamptz[], $10::bigint[])
       AS k (t, p, c, w, ty, tx, pl, cw, sa, d)
ON CONFLICT (phone_number_id, wamid) WHERE wamid IS NOT NULL DO NOTHING
RETURNING id, phone_number_id, wamid;

-- name: insert_statuses
INSERT INTO statuses (tenant_id, phone_number_id, wamid, status, occurred_at, recipient_id,
                      recipient_user_id, errors, pricing, conversation, biz_opaque_callback_data,
                      payload, delivery_id)
SELECT t, p, w, st, at, r, ru, e::jsonb, pr::jsonb, cv::jsonb, bz, pl::jsonb, d
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
              $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
              $13::bigint[])
       AS k (t, p, w, st, at, r, ru, e, pr, cv, bz, pl, d)
ON CONFLICT (phone_number_id, wamid, status) DO NOTHING
RETURNING phone_number_id, wamid, status;

-- name: advance_message_statuses
-- Statuses arrive duplicated and out of order: only move forward; `failed` always lands and
-- stays (a `delivered` processed after it, by another worker or another delivery, is older news).
-- At most one row per message in a call (the caller applies a batch's statuses of one message
-- in rounds, in their order), so each is applied exactly as one at a time would be.
UPDATE messages m
   SET status = CASE WHEN u.status = 'failed' OR (m.status <> 'failed'
                          AND wa_status_rank(u.status) > wa_status_rank(m.status))
                     THEN u.status ELSE m.status END,
       status_at = CASE WHEN u.status = 'failed' OR (m.status <> 'failed'
                             AND wa_status_rank(u.status) > wa_status_rank(m.status))
                        THEN u.occurred_at ELSE m.status_at END,
       errors = CASE WHEN u.status = 'failed' THEN u.errors::jsonb ELSE m.errors END,
       pricing = coalesce(u.pricing::jsonb, m.pricing)
  FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[],
              $7::uuid[])
       AS u (phone_number_id, wamid, status, occurred_at, errors, pricing, tenant_id)
 WHERE m.phone_number_id = u.phone_number_id AND m.wamid = u.wamid AND m.direction = 'out'
   AND m.tenant_id = u.tenant_id;

-- name: close_windows
-- Meta said 131047: the window is closed for these recipients until they write again. Closed
-- as of each failure's own time, not ours: Meta does not order webhooks, and a late 131047 about
-- an older send must not close the window a newer inbound message opened. (Matched by wa_id and
-- by user_id separately, each on its unique index, the tenant as a filter, as find_contacts.)
WITH u AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::uuid[])
           AS u (phone_number_id, wa_id, user_id, occurred_at, tenant_id)
), matched AS (
    SELECT c.id, coalesce(u.occurred_at, now()) AS closed_at
      FROM u JOIN contacts c ON c.phone_number_id = u.phone_number_id AND c.wa_id = u.wa_id
                            AND c.tenant_id IS NOT DISTINCT FROM u.tenant_id
    UNION ALL
    SELECT c.id, coalesce(u.occurred_at, now())
      FROM u JOIN contacts c ON c.phone_number_id = u.phone_number_id AND c.user_id = u.user_id
                            AND c.tenant_id IS NOT DISTINCT FROM u.tenant_id
)
UPDATE contacts c
   SET window_closed_at = greatest(c.window_closed_at, x.closed_at), updated_at = now()
  FROM (SELECT id, max(closed_at) AS closed_at FROM matched GROUP BY id) x
 WHERE c.id = x.id;

-- name: insert_events
INSERT INTO events (tenant_id, phone_number_id, waba_id, field, kind, orphaned, payload,
                    dedup_key, delivery_id, source, orphan_reason)
SELECT t, p, wb, f, k, o, pl::jsonb, dk, d, src, r
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bool[],
              $7::text[], $8::bytea[], $9::bigint[], $10::text[], $11::text[])
       AS u (t, p, wb, f, k, o, pl, dk, d, src, r)
ON CONFLICT (dedup_key) DO NOTHING
RETURNING dedup_key;

-- name: schedule_replies
-- The bursts these new messages open or join ($5: the messages, in the order of the others): one
-- pending job per conversation; a later message pushes its due time back and is answered with
-- the rest. A job already running is not joined: the message opens the next burst.
WITH burst AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::float8[], $5::uuid[])
           AS u (tenant_id, phone_number_id, contact_id, debounce_seconds, message_id)
), jobs AS (
    INSERT INTO replies (tenant_id, phone_number_id, contact_id, due_at)
    SELECT DISTINCT ON (contact_id) tenant_id, phone_number_id, contact_id,
           clock_timestamp() + make_interval(secs => debounce_seconds)
      FROM burst
     ORDER BY contact_id
    ON CONFLICT (contact_id) WHERE state = 'pending'
    DO UPDATE SET due_at = greatest(replies.due_at, excluded.due_at)
    RETURNING id, contact_id
), marked AS (
    UPDATE messages m SET reply_id = j.id
      FROM burst b JOIN jobs j ON j.contact_id = b.contact_id
     WHERE m.id = b.message_id
)
SELECT pg_notify('{{channel.replies}}', '') WHERE EXISTS (SELECT 1 FROM jobs);
