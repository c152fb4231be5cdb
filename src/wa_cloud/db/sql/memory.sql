-- Contact memory (api/contacts.py, ai/memory.py): a contact's tags, notes and fields.

-- name: contact_detail
-- One contact as GET /v1/contacts/{contact} shows it: the view, its first and last message
-- times and its messages in each direction (one range scan of messages_contact).
SELECT {{contact_view:c}}, s.first_message_at, s.last_message_at, s.messages_in, s.messages_out
  FROM contacts c
 CROSS JOIN LATERAL (
       SELECT min(coalesce(m.sent_at, m.created_at)) AS first_message_at,
              max(coalesce(m.sent_at, m.created_at)) AS last_message_at,
              count(*) FILTER (WHERE m.direction = 'in') AS messages_in,
              count(*) FILTER (WHERE m.direction = 'out') AS messages_out
         FROM messages m
        WHERE m.contact_id = c.id AND m.tenant_id = c.tenant_id) s
 WHERE c.id = $1 AND c.tenant_id = $2;

-- name: lock_contact_memory
-- Read to merge: the API's PATCH and the model's extraction change one contact in turn.
SELECT tags, notes, fields FROM contacts WHERE id = $1 AND tenant_id = $2 FOR UPDATE;

-- name: save_contact_memory
UPDATE contacts SET tags = $3, notes = $4, fields = $5, updated_at = now()
 WHERE id = $1 AND tenant_id = $2;
