-- Web-session numbers: their session rows, as the indexer learns of them from the gateway's
-- events and the watchdog (providers/watchdog.py) acts on them.

-- name: session_for_event
-- The session an event of the gateway is about, locked (events of one session apply one at a
-- time), with the registered phone and whether another number's open session runs that phone.
SELECT s.state, n.display_phone_number, s.attempts,
       (SELECT o.phone_number_id FROM web_sessions o
         WHERE o.wuid = $3 AND o.state = 'open' AND o.phone_number_id <> s.phone_number_id
         LIMIT 1) AS taken_by
  FROM web_sessions s JOIN numbers n ON n.phone_number_id = s.phone_number_id
 WHERE s.phone_number_id = $1 AND s.tenant_id = $2 AND n.tenant_id = $2
   AND n.removed_at IS NULL
   FOR UPDATE OF s;

-- name: set_session
-- $9: the watchdog's next step, due in $10 seconds (woken now when 0); $11: a mail is due.
WITH updated AS (
    UPDATE web_sessions
       SET state = $3, reason = $4, qr_base64 = $5, pairing_code = $6,
           wuid = coalesce($7, CASE WHEN $3 = 'open' THEN wuid END),
           profile_name = coalesce($8, profile_name), state_at = now(),
           action = $9, due_at = now() + make_interval(secs => $10),
           attempts = CASE WHEN $3 = 'open' THEN 0 ELSE attempts END,
           mail_due = mail_due OR $11
     WHERE phone_number_id = $1 AND tenant_id = $2
    RETURNING phone_number_id
)
SELECT pg_notify('{{channel.sessions}}', phone_number_id) FROM updated WHERE $10 = 0;

-- name: message_known
SELECT 1 FROM messages WHERE phone_number_id = $1 AND wamid = $2;

-- name: send_in_flight
-- A send of ours to this contact ($2, or by its number $3: a first message has no contact yet)
-- still waiting for the gateway's answer, or whose answer was lost lately: an echo of an id we
-- do not know may be that send's own.
SELECT 1 FROM messages
 WHERE phone_number_id = $1 AND direction = 'out' AND wamid IS NULL
   AND (contact_id = $2 OR recipient = $3)
   AND (status = 'sending' OR (status = 'unknown' AND dispatched_at > now() - interval '10 minutes'))
 LIMIT 1;

-- name: contact_for_echo
-- The contact a message typed on the business's phone was written to, created if new.
WITH found AS (
    SELECT id FROM contacts
     WHERE phone_number_id = $2 AND tenant_id = $1
       AND (wa_id = $3 OR (wa_id IS NULL AND user_id = $4))
     LIMIT 1
), inserted AS (
    INSERT INTO contacts (tenant_id, phone_number_id, wa_id, user_id)
    SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM found)
    ON CONFLICT DO NOTHING
    RETURNING id
)
SELECT id FROM found UNION ALL SELECT id FROM inserted;

-- name: insert_echo
-- What the business wrote from its phone: outbound, by a human, already sent.
INSERT INTO messages (tenant_id, phone_number_id, contact_id, wamid, direction, type, text,
                      payload, status, sent_at, delivery_id, author, recipient)
VALUES ($1, $2, $3, $4, 'out', $5, $6, $7::jsonb, 'sent', coalesce($8, now()), $9, 'human', $10)
ON CONFLICT (phone_number_id, wamid) WHERE wamid IS NOT NULL DO NOTHING
RETURNING id;

-- name: claim_sessions
-- Sessions whose next gateway call is due, leased so that one worker makes it.
WITH due AS (
    SELECT s.phone_number_id FROM web_sessions s
      JOIN numbers n ON n.phone_number_id = s.phone_number_id AND n.tenant_id = s.tenant_id
     WHERE (s.action <> 'none' OR s.mail_due) AND s.due_at <= now() AND n.removed_at IS NULL
       AND (s.locked_until IS NULL OR s.locked_until < now())
     ORDER BY s.due_at
     LIMIT $1
       FOR UPDATE OF s SKIP LOCKED
)
UPDATE web_sessions s SET locked_until = now() + make_interval(secs => $2)
  FROM due, numbers n, tenants t
 WHERE s.phone_number_id = due.phone_number_id AND n.phone_number_id = s.phone_number_id
   AND t.id = s.tenant_id
RETURNING s.phone_number_id, s.tenant_id, s.action, s.state, s.state_at, s.attempts, s.mail_due,
          n.display_phone_number, n.provider, n.gateway_url, n.gateway_instance,
          n.access_token_enc, t.name AS tenant_name, t.email, t.link_generation;

-- name: save_session_secret
-- The hash of the secret about to be given to the gateway: stored (and committed) before the
-- gateway has it, so that no event it posts with that secret is ever refused.
UPDATE web_sessions SET secret_hash = $3 WHERE phone_number_id = $1 AND tenant_id = $2;

-- name: session_stepped
-- The watchdog's outcome. What it learned ($3..$6; $3 NULL: nothing) and its next step ($7 in
-- $8 seconds) are written only if no event moved the session since the claim ($10): the
-- gateway's news is newer than ours (a logout asks to connect).
UPDATE web_sessions
   SET state = CASE WHEN $3::text IS NOT NULL AND state_at = $10 THEN $3 ELSE state END,
       reason = CASE WHEN $3::text IS NOT NULL AND state_at = $10 THEN $4 ELSE reason END,
       qr_base64 = CASE WHEN $3::text IS NOT NULL AND state_at = $10 THEN $5 ELSE qr_base64 END,
       pairing_code = CASE WHEN $3::text IS NOT NULL AND state_at = $10 THEN $6
                           ELSE pairing_code END,
       state_at = CASE WHEN $3::text IS NOT NULL AND state_at = $10 AND state <> $3 THEN now()
                       ELSE state_at END,
       action = CASE WHEN state_at = $10 THEN $7 ELSE action END,
       due_at = CASE WHEN state_at = $10 THEN now() + make_interval(secs => $8) ELSE due_at END,
       attempts = $9, mail_due = mail_due AND NOT $11, locked_until = NULL
 WHERE phone_number_id = $1 AND tenant_id = $2;

-- name: next_session_due
SELECT extract(epoch FROM min(due_at) - now())::float8 FROM web_sessions
 WHERE action <> 'none' OR mail_due;

-- name: insert_web_session
INSERT INTO web_sessions (phone_number_id, tenant_id, secret_hash)
VALUES ($1, $2, $3)
ON CONFLICT (phone_number_id) DO UPDATE
   SET tenant_id = excluded.tenant_id, secret_hash = excluded.secret_hash, state = 'connecting',
       reason = NULL, qr_base64 = NULL, pairing_code = NULL, wuid = NULL, profile_name = NULL,
       state_at = now(), action = 'create', due_at = now(), attempts = 0,
       locked_until = NULL, mail_due = false;

-- name: wake_sessions
SELECT pg_notify('{{channel.sessions}}', $1);

-- name: web_session
-- A tenant's web-session number's session as the API shows it.
SELECT s.state, s.reason, s.qr_base64, s.pairing_code, s.state_at
  FROM web_sessions s JOIN numbers n ON n.phone_number_id = s.phone_number_id
 WHERE s.phone_number_id = $1 AND s.tenant_id = $2 AND n.tenant_id = $2
   AND n.removed_at IS NULL;

-- name: session_ended
-- The number removed: its instance deleted at the gateway (or tried), nothing left to do.
UPDATE web_sessions
   SET state = 'logged_out', reason = 'The number was removed.', qr_base64 = NULL,
       pairing_code = NULL, action = 'none', state_at = now(), locked_until = NULL
 WHERE phone_number_id = $1 AND tenant_id = $2;
