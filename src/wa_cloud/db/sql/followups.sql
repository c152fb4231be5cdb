-- Follow-ups and reminders (ai/followup_rules.py schedules, ai/followups.py sends,
-- api/followups.py shows and adds). "Now" is always a parameter, the caller's clock, so a test
-- can move time without sleeping; a row is claimed with a lease and `claims` fences its finish.

-- name: follow_up_rules
-- A number's rules and time zone, as its assistant is configured (no row: no rules).
SELECT b.follow_ups, b.timezone
  FROM bots b
 WHERE b.phone_number_id = $1 AND b.tenant_id = $2;

-- name: replace_follow_ups
-- A newer message of ours: the conversation's waiting follow-ups give way to a new schedule
-- (inserted next with insert_follow_ups), so they never pile up.
UPDATE follow_ups
   SET state = 'cancelled', reason = 'replaced by a newer message', finished_at = now()
 WHERE contact_id = $1 AND tenant_id = $2 AND kind = 'follow_up' AND state = 'scheduled';

-- name: insert_follow_ups
-- Follow-ups of conversation $3, one per rule ($4 rule indexes, $5 attempts, $6 of how many,
-- $7 when). A rule with one pending already (being sent right now) keeps that one.
INSERT INTO follow_ups (tenant_id, phone_number_id, contact_id, kind, rule_index, attempt,
                        max_attempts, due_at)
SELECT $1, $2, $3, 'follow_up', u.rule_index, u.attempt, u.max_attempts, u.due_at
  FROM unnest($4::int[], $5::int[], $6::int[], $7::timestamptz[])
       AS u (rule_index, attempt, max_attempts, due_at)
ON CONFLICT (contact_id, rule_index) WHERE kind = 'follow_up' AND state IN ('scheduled', 'sending')
DO NOTHING;

-- name: cancel_follow_ups_on_inbound
-- The customer wrote: their conversations' follow-ups are off (one being written too: its
-- finish then finds no row to finish). Reminders stay.
UPDATE follow_ups
   SET state = 'cancelled', reason = 'the customer wrote', finished_at = now(),
       locked_until = NULL
 WHERE contact_id = ANY ($1::bigint[]) AND kind = 'follow_up'
   AND state IN ('scheduled', 'sending');

-- name: notify_follow_ups
SELECT pg_notify('{{channel.follow_ups}}', '');

-- name: claim_follow_ups
-- Due rows ($3: now): scheduled ones at their time, sending ones whose worker died (lease
-- ended). Fair between tenants: a tenant gets at most $6 of this worker's sends, counting those
-- it already runs ($4 tenants, $5 their counts).
WITH due AS (
    SELECT f.id, f.tenant_id,
           CASE WHEN f.state = 'scheduled' THEN f.due_at ELSE f.locked_until END AS due
      FROM follow_ups f
     WHERE (f.state = 'scheduled' AND f.due_at <= $3)
        OR (f.state = 'sending' AND f.locked_until <= $3)
), ranked AS (
    SELECT d.id, d.due,
           row_number() OVER (PARTITION BY d.tenant_id ORDER BY d.due) AS n,
           coalesce(b.running, 0) AS running
      FROM due d
      LEFT JOIN unnest($4::uuid[], $5::int[]) AS b (tenant_id, running)
             ON b.tenant_id = d.tenant_id
), chosen AS (
    SELECT f.id
      FROM follow_ups f JOIN ranked k ON k.id = f.id
     WHERE k.n <= $6 - k.running
       -- checked again on the row as locked: another worker may have just claimed it
       AND ((f.state = 'scheduled' AND f.due_at <= $3)
            OR (f.state = 'sending' AND f.locked_until <= $3))
     ORDER BY k.due
     LIMIT $1
     FOR UPDATE OF f SKIP LOCKED
)
UPDATE follow_ups f
   SET state = 'sending', claims = f.claims + 1, locked_until = $3 + make_interval(secs => $2)
  FROM chosen
 WHERE f.id = chosen.id
RETURNING f.id, f.tenant_id, f.phone_number_id, f.contact_id, f.kind, f.rule_index, f.attempt,
          f.max_attempts, f.text, f.template, f.claims, f.created_at;

-- name: extend_follow_up_lease
UPDATE follow_ups SET locked_until = $3 + make_interval(secs => $4)
 WHERE id = $1 AND state = 'sending' AND claims = $2;

-- name: next_follow_up_due
-- Seconds from $2 (now) until the next row this worker could claim is due (NULL: none), not
-- counting the tenants at their share here ($1): a finishing send wakes the consumer for those.
SELECT extract(epoch FROM least(
           (SELECT min(due_at) FROM follow_ups
             WHERE state = 'scheduled' AND NOT (tenant_id = ANY ($1::uuid[]))),
           (SELECT min(locked_until) FROM follow_ups
             WHERE state = 'sending' AND NOT (tenant_id = ANY ($1::uuid[]))))
       - $2)::float8;

-- name: postpone_follow_up
-- Outside its hours when claimed (a late worker, a changed rule): back to waiting until $3.
-- Not an attempt: the claim's count is taken back.
UPDATE follow_ups
   SET state = 'scheduled', due_at = $3, locked_until = NULL, claims = claims - 1
 WHERE id = $1 AND state = 'sending' AND claims = $2;

-- name: lock_follow_up_contact
-- The finish takes the contact before the row (lock_follow_up), in the indexer's order: the
-- indexer holds a contact while it cancels that contact's follow-ups, and a finish holding
-- the row while it waited for the contact would deadlock with it.
SELECT 1 FROM contacts WHERE id = (SELECT contact_id FROM follow_ups WHERE id = $1) FOR SHARE;

-- name: lock_follow_up
-- The finish's fence: the row is still being sent under this claim (no row: it is not, it was
-- cancelled or claimed again). With the gates as they are now: the contact held until the
-- transaction ends, so a pause waits for it or is seen by it.
SELECT NOT (c.bot_paused AND (c.paused_until IS NULL OR c.paused_until > now()))
       AND coalesce(n.bot_enabled, false) AS bot_may_talk,
       n.phone_number_id IS NOT NULL AS registered, t.active AS tenant_active,
       coalesce(c.wa_id, c.user_id) AS recipient
  FROM follow_ups f
  JOIN contacts c ON c.id = f.contact_id
  -- still this tenant's number, as registered when the row was scheduled: one removed (and
  -- registered again, by anyone) since is closed to it
  LEFT JOIN numbers n ON n.phone_number_id = f.phone_number_id AND n.tenant_id = f.tenant_id
                     AND n.removed_at IS NULL
                     AND coalesce(n.verified_at, '-infinity') <= f.created_at
  JOIN tenants t ON t.id = f.tenant_id
 WHERE f.id = $1 AND f.state = 'sending' AND f.claims = $2
   FOR UPDATE OF f FOR SHARE OF c;

-- name: follow_up_checks
-- What a claimed row ($1) is checked against besides the conversation (replies.sql
-- reply_context): whether its number is still the registration it was scheduled on (a number
-- removed meanwhile ends what waited for it, as remove_number fails what was queued, even when
-- it comes back); whether the customer opted out on it (this tenant's opt-outs: campaigns.sql);
-- and how our last message before the row fared (a follow-up of one Meta refused follows
-- nothing). Messages are created in the row's own transaction, at the same now().
SELECT coalesce(n.verified_at, '-infinity') <= f.created_at AS same_registration,
       EXISTS (SELECT 1 FROM opt_outs o
                WHERE o.phone_number_id = f.phone_number_id AND o.tenant_id = f.tenant_id
                  AND o.recipient IN (c.wa_id, c.user_id)) AS opted_out,
       (SELECT m.status FROM messages m
         WHERE m.contact_id = f.contact_id AND m.tenant_id = f.tenant_id
           AND m.direction = 'out' AND m.created_at <= f.created_at
         ORDER BY coalesce(m.sent_at, m.created_at) DESC, m.id DESC
         LIMIT 1) AS last_out_status
  FROM follow_ups f
  JOIN contacts c ON c.id = f.contact_id
  LEFT JOIN numbers n ON n.phone_number_id = f.phone_number_id AND n.tenant_id = f.tenant_id
 WHERE f.id = $1;

-- name: finish_follow_up
-- $3 state, $4 reason, $5 the queued message, $6 and $7 what it said (kept as scheduled when
-- NULL). Only the holder of the lease finishes it.
UPDATE follow_ups
   SET state = $3, reason = $4, message_id = $5, text = coalesce($6, text),
       template = coalesce($7::jsonb, template), finished_at = now(), locked_until = NULL
 WHERE id = $1 AND state = 'sending' AND claims = $2
RETURNING id;

-- name: debit_follow_up
-- Follow-up $3, written by the model, costs $4 (> 0) credits, once (credit_ledger.follow_up_id
-- is unique); short of credits nothing changes (`debited` NULL). As debit_reply.
WITH done AS (
    SELECT 1 FROM credit_ledger WHERE follow_up_id = $3::bigint
), moved AS (
    UPDATE tenants SET credits_balance = credits_balance - $4::bigint
     WHERE id = $1 AND credits_balance >= $4::bigint AND NOT EXISTS (SELECT 1 FROM done)
    RETURNING credits_balance + $4::bigint AS balance_before, credits_balance AS balance_after
), entry AS (
    INSERT INTO credit_ledger (tenant_id, amount, balance_before, balance_after, reason,
                               phone_number_id, follow_up_id)
    SELECT $1, -$4::bigint, balance_before, balance_after, 'follow_up', $2, $3::bigint
      FROM moved
    RETURNING balance_after
)
SELECT (SELECT balance_after FROM entry) AS debited, EXISTS (SELECT 1 FROM done) AS repeated;

-- name: lock_contact_reminders
-- A reminder is added under its contact's lock ($1), so two at once count each other.
SELECT 1 FROM contacts WHERE id = $1 FOR NO KEY UPDATE;

-- name: insert_reminder
-- No row: the contact has $7 reminders waiting already (taken after lock_contact_reminders).
INSERT INTO follow_ups (tenant_id, phone_number_id, contact_id, kind, due_at, text, template)
SELECT $1, $2, $3, 'reminder', $4, $5, $6
 WHERE (SELECT count(*) FROM follow_ups
         WHERE contact_id = $3 AND kind = 'reminder'
           AND state IN ('scheduled', 'sending')) < $7
RETURNING *;

-- name: list_follow_ups
-- A contact's follow-ups and reminders, newest first, a page before the cursor ($3: an id).
SELECT * FROM follow_ups
 WHERE contact_id = $1 AND tenant_id = $2
   AND ($3::bigint IS NULL OR id < $3)
 ORDER BY id DESC
 LIMIT $4;

-- name: cancel_follow_up
-- The tenant calls one off while it still waits (no row: not theirs, or not waiting).
UPDATE follow_ups
   SET state = 'cancelled', reason = 'cancelled through the API', finished_at = now()
 WHERE id = $1 AND contact_id = $2 AND tenant_id = $3 AND state = 'scheduled'
RETURNING *;

-- name: find_follow_up
SELECT * FROM follow_ups WHERE id = $1 AND contact_id = $2 AND tenant_id = $3;

-- name: delete_old_follow_ups
-- Finished rows, kept as long as raw bodies are (their texts quote conversations); waiting
-- ones stay whatever their age.
WITH due AS (
    SELECT id FROM follow_ups
     WHERE finished_at < now() - make_interval(secs => $1)
     ORDER BY finished_at
     LIMIT $2
     FOR UPDATE SKIP LOCKED
), deleted AS (
    DELETE FROM follow_ups f USING due WHERE f.id = due.id RETURNING 1
)
SELECT count(*) FROM deleted;
