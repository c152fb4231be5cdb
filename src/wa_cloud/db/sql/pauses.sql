-- A conversation's assistant paused from the API, or taken over by a person who writes through
-- it (api/contacts.py, outbox/enqueue.py). A pause has an end (paused_until; NULL: until
-- resumed) and says who asked (paused_by); the API shows it as fragments/contact_view.sql does.

-- name: pause_conversation
-- $3: minutes (NULL: until resumed); $4: who asked ('api', 'console', 'contact', 'owner').
UPDATE contacts c
   SET bot_paused = true, paused_until = now() + make_interval(secs => $3::float8 * 60),
       paused_by = $4, updated_at = now()
 WHERE c.id = $1 AND c.tenant_id = $2
RETURNING {{contact_view:c}};

-- name: resume_conversation
UPDATE contacts c
   SET bot_paused = false, paused_until = NULL, paused_by = NULL, updated_at = now()
 WHERE c.id = $1 AND c.tenant_id = $2
RETURNING {{contact_view:c}};

-- name: human_takeover
-- A person wrote to contact $1 through number $2 of tenant $3: the assistant keeps out of that
-- conversation for the number's human_takeover_minutes (its bots row of this tenant; none: 30;
-- 0: no takeover). A pause that already lasts longer stays as it is (its end and who asked), so
-- a pause until resumed is never shortened.
WITH setting AS (
    SELECT coalesce((SELECT human_takeover_minutes FROM bots
                      WHERE phone_number_id = $2 AND tenant_id = $3), $4)::float8 * 60 AS secs
)
UPDATE contacts c
   SET bot_paused = true, paused_until = now() + make_interval(secs => s.secs),
       paused_by = 'human', updated_at = now()
  FROM setting s
 WHERE c.id = $1 AND c.tenant_id = $3 AND s.secs > 0
   AND NOT (c.bot_paused
            AND (c.paused_until IS NULL
                 OR c.paused_until >= now() + make_interval(secs => s.secs)));
