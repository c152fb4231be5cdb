-- name: list_contacts
SELECT id, wa_id, user_id, name, username, last_inbound_at, window_closed_at, bot_paused
  FROM contacts
 WHERE tenant_id = $1 AND phone_number_id = $2 AND ($3::bigint IS NULL OR id < $3)
 ORDER BY id DESC
 LIMIT $4;

-- name: find_tenant_contact
SELECT id FROM contacts
 WHERE tenant_id = $1 AND phone_number_id = $2 AND (wa_id = $3 OR user_id = $3)
 LIMIT 1;

-- name: contact_messages
SELECT id, wamid, direction, type, text, status, created_at,
       coalesce(sent_at, created_at) AS at
  FROM messages
 WHERE tenant_id = $1 AND contact_id = $2
   AND ($3::timestamptz IS NULL OR (coalesce(sent_at, created_at), id) < ($3, $4::uuid))
 ORDER BY coalesce(sent_at, created_at) DESC, id DESC
 LIMIT $5;
