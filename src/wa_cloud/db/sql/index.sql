-- name: number_owners
-- With the events each owner's webhook takes (none: empty), so indexing spends no statement on
-- forwarding for tenants without a webhook.
SELECT n.phone_number_id, n.waba_id, n.tenant_id, n.app_id,
       coalesce(w.events, '{}') AS forward_events
  FROM numbers n
  LEFT JOIN tenant_webhooks w ON w.tenant_id = n.tenant_id
 WHERE (n.phone_number_id = ANY($1::text[]) OR n.waba_id = ANY($2::text[]))
   -- A removed number speaks for nobody: what Meta still sends for it is orphaned (and adopted
   -- if it is registered again within Meta's retry horizon).
   AND n.removed_at IS NULL;

-- name: find_contact
SELECT id, wa_id, user_id FROM contacts
 WHERE phone_number_id = $1 AND tenant_id = $4 AND (wa_id = $2 OR user_id = $3)
 ORDER BY (wa_id = $2) DESC NULLS LAST
 LIMIT 1
 FOR UPDATE;

-- name: update_contact
-- Fill in identifiers we did not know yet; the window only ever moves forward.
UPDATE contacts
   SET wa_id = coalesce(wa_id, $2), user_id = coalesce(user_id, $3),
       parent_user_id = coalesce($4, parent_user_id), username = coalesce($5, username),
       name = coalesce($6, name),
       last_inbound_at = greatest(last_inbound_at, $7),
       updated_at = now()
 WHERE id = $1;

-- name: insert_contact
INSERT INTO contacts (tenant_id, phone_number_id, wa_id, user_id, parent_user_id, username, name,
                      last_inbound_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT DO NOTHING
RETURNING id;

-- name: insert_inbound_message
INSERT INTO messages (tenant_id, phone_number_id, contact_id, wamid, direction, type, text,
                      payload, context_wamid, status, sent_at, delivery_id)
VALUES ($1, $2, $3, $4, 'in', $5, $6, $7, $8, 'received', $9, $10)
ON CONFLICT (phone_number_id, wamid) WHERE wamid IS NOT NULL DO NOTHING
RETURNING id;

-- name: insert_status
INSERT INTO statuses (tenant_id, phone_number_id, wamid, status, occurred_at, recipient_id,
                      recipient_user_id, errors, pricing, conversation, biz_opaque_callback_data,
                      payload, delivery_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (phone_number_id, wamid, status) DO NOTHING
RETURNING id;

-- name: advance_message_status
-- Statuses arrive duplicated and out of order: only move forward; `failed` always lands and
-- stays (a `delivered` processed after it, by another worker or another delivery, is older news).
UPDATE messages
   SET status = CASE WHEN $3 = 'failed' OR (status <> 'failed'
                          AND wa_status_rank($3) > wa_status_rank(status))
                     THEN $3 ELSE status END,
       status_at = CASE WHEN $3 = 'failed' OR (status <> 'failed'
                             AND wa_status_rank($3) > wa_status_rank(status))
                        THEN $4 ELSE status_at END,
       errors = CASE WHEN $3 = 'failed' THEN $5 ELSE errors END,
       pricing = coalesce($6, pricing)
 WHERE phone_number_id = $1 AND wamid = $2 AND direction = 'out' AND tenant_id = $7;

-- name: close_window
-- Meta said 131047: the window is closed for this recipient until they write again. Closed as
-- of the failure's own time, not ours: Meta does not order webhooks, and a late 131047 about an
-- older send must not close the window a newer inbound message opened.
UPDATE contacts
   SET window_closed_at = greatest(window_closed_at, coalesce($4, now())), updated_at = now()
 WHERE phone_number_id = $1 AND tenant_id = $5 AND (wa_id = $2 OR user_id = $3);

-- name: insert_event
INSERT INTO events (tenant_id, phone_number_id, waba_id, field, kind, orphaned, payload,
                    dedup_key, delivery_id, source, orphan_reason)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (dedup_key) DO NOTHING;
