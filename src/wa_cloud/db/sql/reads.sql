-- name: list_contacts
-- $5: tags the contact has all of ('{}': any); $6: fields it has with these values, as
-- {"<name>": {"value": "<value>"}} ('{}': any); both served by their GIN indexes (0016).
SELECT {{contact_view:c}}
  FROM contacts c
 WHERE c.tenant_id = $1 AND c.phone_number_id = $2 AND ($3::bigint IS NULL OR c.id < $3)
   AND c.tags @> $5::text[] AND c.fields @> $6::jsonb
 ORDER BY c.id DESC
 LIMIT $4;

-- name: find_tenant_contact
SELECT id FROM contacts
 WHERE tenant_id = $1 AND phone_number_id = $2 AND (wa_id = $3 OR user_id = $3)
 LIMIT 1;

-- name: contact_messages
-- `text`: the body or caption, else what the assistant understood of the media (a transcript).
SELECT id, wamid, direction, type, coalesce(text, media_text) AS text, status, created_at, purged_at IS NOT NULL AS purged,
       coalesce(sent_at, created_at) AS at
  FROM messages
 WHERE tenant_id = $1 AND contact_id = $2
   AND ($3::timestamptz IS NULL OR (coalesce(sent_at, created_at), id) < ($3, $4::uuid))
 ORDER BY coalesce(sent_at, created_at) DESC, id DESC
 LIMIT $5;
