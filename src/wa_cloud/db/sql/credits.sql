-- Credits and model usage (ai/usage.py, api/credits.py): a balance per tenant, every movement
-- a ledger row written in the transaction that moves it; tokens per tenant, number, model,
-- feature and UTC day.

-- name: lock_credits
-- Held to the end of the caller's transaction: the balance cannot move under it.
SELECT credits_balance FROM tenants WHERE id = $1 FOR UPDATE;

-- name: add_credits
-- The operator's movement (either sign), after lock_credits checked it keeps the balance >= 0.
WITH moved AS (
    UPDATE tenants SET credits_balance = credits_balance + $2::bigint
     WHERE id = $1
    RETURNING credits_balance - $2::bigint AS balance_before, credits_balance AS balance_after
)
INSERT INTO credit_ledger (tenant_id, amount, balance_before, balance_after, reason)
SELECT $1, $2::bigint, balance_before, balance_after, $3 FROM moved
RETURNING id, amount, balance_before, balance_after, reason, phone_number_id, created_at;

-- name: debit_reply
-- Reply job $3 costs $4 (> 0) credits, once: credit_ledger.reply_id is unique, and a job that
-- has its row already changes nothing (`repeated`, with the balance as it is). Short of credits
-- nothing changes either (`debited` NULL). The balance check is the UPDATE's own condition, so
-- two replies racing for the last credits cannot both take them.
WITH done AS (
    SELECT 1 FROM credit_ledger WHERE reply_id = $3::bigint
), moved AS (
    UPDATE tenants SET credits_balance = credits_balance - $4::bigint
     WHERE id = $1 AND credits_balance >= $4::bigint AND NOT EXISTS (SELECT 1 FROM done)
    RETURNING credits_balance + $4::bigint AS balance_before, credits_balance AS balance_after
), entry AS (
    INSERT INTO credit_ledger (tenant_id, amount, balance_before, balance_after, reason,
                               phone_number_id, reply_id)
    SELECT $1, -$4::bigint, balance_before, balance_after, 'reply', $2, $3::bigint FROM moved
    RETURNING balance_after
)
SELECT (SELECT balance_after FROM entry) AS debited,
       EXISTS (SELECT 1 FROM done) AS repeated,
       (SELECT credits_balance FROM tenants WHERE id = $1) AS balance;

-- name: credits_balance
SELECT coalesce((SELECT credits_balance FROM tenants WHERE id = $1), 0);

-- name: record_tokens
-- One model call's tokens, added to today's (UTC) row of its tenant, number, model and feature.
INSERT INTO token_usage AS u (tenant_id, phone_number_id, model, feature, day, calls,
                              input_tokens, output_tokens)
VALUES ($1, $2, $3, $4, (now() AT TIME ZONE 'UTC')::date, 1, $5, $6)
ON CONFLICT (tenant_id, phone_number_id, model, feature, day) DO UPDATE
   SET calls = u.calls + 1, input_tokens = u.input_tokens + excluded.input_tokens,
       output_tokens = u.output_tokens + excluded.output_tokens;

-- name: usage_ledger
-- The tenant's newest movements first (credit_ledger_tenant), within the UTC days $2..$3 (NULL:
-- open-ended).
SELECT id, amount, balance_before, balance_after, reason, phone_number_id, created_at
  FROM credit_ledger
 WHERE tenant_id = $1
   AND ($2::date IS NULL OR created_at >= $2::date::timestamp AT TIME ZONE 'UTC')
   AND ($3::date IS NULL OR created_at < ($3::date + 1)::timestamp AT TIME ZONE 'UTC')
 ORDER BY id DESC
 LIMIT $4;

-- name: usage_tokens
-- The tenant's tokens summed over the UTC days $2..$3 (NULL: open-ended).
SELECT phone_number_id, model, feature, sum(calls)::bigint AS calls,
       sum(input_tokens)::bigint AS input_tokens, sum(output_tokens)::bigint AS output_tokens
  FROM token_usage
 WHERE tenant_id = $1 AND ($2::date IS NULL OR day >= $2::date)
   AND ($3::date IS NULL OR day <= $3::date)
 GROUP BY phone_number_id, model, feature
 ORDER BY phone_number_id, model, feature;
