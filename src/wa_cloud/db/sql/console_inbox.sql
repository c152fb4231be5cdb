-- The console's inbox (console/inbox.py): a business's conversations, one thread, its media.
-- Every statement is scoped by the caller's tenant ($1 or as named); another tenant's number,
-- contact or message is simply not found. Sized for 10,000 conversations and 1,000,000
-- messages: a page reads a bounded number of rows through contacts_tenant and messages_contact.

-- name: inbox_numbers
-- The tenant's numbers for the number selector, with what the thread needs of each (its
-- provider, its assistant's switch and time zone).
SELECT n.phone_number_id, n.display_phone_number, n.verified_name, n.provider, n.waba_id,
       n.bot_enabled, coalesce(b.timezone, 'UTC') AS timezone
  FROM numbers n
  LEFT JOIN bots b ON b.phone_number_id = n.phone_number_id AND b.tenant_id = n.tenant_id
 WHERE n.tenant_id = $1 AND n.removed_at IS NULL
 ORDER BY n.created_at, n.phone_number_id;

-- name: inbox_page
-- A page of conversations of number $2, the customer's latest message first (contacts_tenant;
-- ties by id). $3, $4: the last conversation of the previous page. A contact who never wrote
-- (a campaign's recipient) is found by search, not listed.
SELECT c.id, c.last_inbound_at
  FROM contacts c
 WHERE c.tenant_id = $1 AND c.phone_number_id = $2 AND c.last_inbound_at IS NOT NULL
   AND ($3::timestamptz IS NULL
        OR (c.last_inbound_at <= $3 AND (c.last_inbound_at, c.id) < ($3, $4::bigint)))
 ORDER BY c.last_inbound_at DESC, c.id DESC
 LIMIT $5;

-- name: inbox_search
-- Conversations of number $2 whose contact's name, username, wa_id or user_id contains $3 (an
-- ILIKE pattern, escaped), or whose wa_id has the digits $4 (NULL: none given), or with a
-- message holding the words $5 (messages_words). A word in very many messages is bounded: at
-- most 3,000 matching messages are read (20 to 30 ms on two cores; 10,000 took 55 ms), in the
-- table's order, so past that some conversations are missed and the page says to narrow the
-- search. Newest first, $6 at most.
WITH worded AS (
    SELECT DISTINCT w.contact_id AS id
      FROM (SELECT m.contact_id FROM messages m
             WHERE to_tsvector('simple', coalesce(m.text, '') || ' ' || coalesce(m.media_text, ''))
                   @@ plainto_tsquery('simple', $5)
               AND m.phone_number_id = $2 AND m.tenant_id = $1 AND m.contact_id IS NOT NULL
             LIMIT 3000) w
), matched AS (
    SELECT c.id FROM contacts c
     WHERE c.tenant_id = $1 AND c.phone_number_id = $2
       -- One ILIKE per contact, over everything it is known by (about half the time of four).
       AND (concat_ws(' ', c.name, c.username, c.wa_id, c.user_id) ILIKE $3
            OR ($4::text IS NOT NULL AND c.wa_id LIKE $4))
    UNION
    SELECT id FROM worded
)
SELECT c.id, c.last_inbound_at
  FROM contacts c JOIN matched USING (id)
 WHERE c.tenant_id = $1 AND c.phone_number_id = $2
 ORDER BY c.last_inbound_at DESC NULLS LAST, c.id DESC
 LIMIT $6;

-- name: inbox_conversations
-- The list's rows for contact ids $2 (in that order): the contact, its latest message and its
-- unread count (inbound messages after read_at, counted to 100 at most: one bounded range of
-- messages_contact per row).
SELECT c.id, c.name, c.username, c.wa_id, c.user_id, c.last_inbound_at,
       last.direction, last.type, last.text, last.template, last.status, last.at, last.purged,
       unread.n AS unread
  FROM unnest($2::bigint[]) WITH ORDINALITY AS page (id, n)
  JOIN contacts c ON c.id = page.id AND c.tenant_id = $1
  LEFT JOIN LATERAL (
       SELECT m.direction, m.type, coalesce(m.text, m.media_text) AS text,
              m.payload -> 'template' ->> 'name' AS template, m.status,
              coalesce(m.sent_at, m.created_at) AS at, m.purged_at IS NOT NULL AS purged
         FROM messages m
        WHERE m.contact_id = c.id
        ORDER BY coalesce(m.sent_at, m.created_at) DESC, m.id DESC
        LIMIT 1) last ON true
 CROSS JOIN LATERAL (
       SELECT count(*) AS n
         FROM (SELECT 1 FROM messages m
                WHERE m.contact_id = c.id
                  AND coalesce(m.sent_at, m.created_at) > coalesce(c.read_at, '-infinity')
                  AND m.direction = 'in'
                ORDER BY coalesce(m.sent_at, m.created_at) DESC, m.id DESC
                LIMIT 100) u) unread
 ORDER BY page.n;

-- name: inbox_contact
-- One conversation's contact, if it is the tenant's and of number $3.
SELECT {{contact_view:c}}, c.paused_by, c.read_at, c.phone_number_id
  FROM contacts c
 WHERE c.id = $1 AND c.tenant_id = $2 AND c.phone_number_id = $3;

-- name: inbox_mark_read
-- The conversation is read now: its inbound messages so far are no longer unread. Nothing is
-- written (nor announced to open pages) when nothing new arrived since the last reading.
UPDATE contacts SET read_at = now()
 WHERE id = $1 AND tenant_id = $2
   AND (read_at IS NULL OR read_at < last_inbound_at);

-- name: inbox_messages
-- A thread's messages, newest first from before ($3, $4) (NULL: the latest), $5 at most
-- (messages_contact); with its media's download state (media_message).
SELECT m.id, m.direction, m.type, m.text, m.media_text, m.status, m.errors, m.author,
       m.purged_at IS NOT NULL AS purged, coalesce(m.sent_at, m.created_at) AS at,
       m.payload -> m.type AS content, md.state AS media_state
  FROM messages m
  LEFT JOIN LATERAL (
       SELECT d.state FROM media d
        WHERE d.message_id = m.id AND d.tenant_id = m.tenant_id
        ORDER BY (d.state = 'stored') DESC, d.created_at DESC
        LIMIT 1) md ON true
 WHERE m.contact_id = $1 AND m.tenant_id = $2
   AND ($3::timestamptz IS NULL OR (coalesce(m.sent_at, m.created_at), m.id) < ($3, $4::uuid))
 ORDER BY coalesce(m.sent_at, m.created_at) DESC, m.id DESC
 LIMIT $5;

-- name: inbox_media
-- The stored media of message $1 of tenant $2 (none once retention purged the message).
SELECT d.state, d.mime_type, d.sha256, d.content, d.last_error,
       m.payload -> m.type ->> 'filename' AS filename
  FROM media d JOIN messages m ON m.id = d.message_id
 WHERE d.message_id = $1 AND d.tenant_id = $2 AND m.tenant_id = $2 AND m.purged_at IS NULL
   AND d.state = 'stored'
 ORDER BY d.created_at DESC
 LIMIT 1;

-- name: inbox_keep_sent_media
-- A file the console sent, kept like a downloaded one, so the thread shows what was sent;
-- retention deletes it with its message.
INSERT INTO media (tenant_id, phone_number_id, media_id, message_id, mime_type, sha256, size,
                   content, state)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'stored')
ON CONFLICT (phone_number_id, media_id) DO NOTHING;

-- name: inbox_templates
-- The templates held for WABA $1, approved ones first (the composer's picker).
SELECT name, language, status, parameter_format, components
  FROM templates
 WHERE waba_id = $1
 ORDER BY status = 'APPROVED' DESC, name, language
 LIMIT 200;
