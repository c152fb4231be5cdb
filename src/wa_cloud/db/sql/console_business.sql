-- A business's console pages of numbers and usage (console/numbers.py, console/usage.py):
-- every statement scoped by the signed-in tenant.

-- name: console_numbers
-- The tenant's numbers with what the list shows: whether a token is stored (never the sealed
-- value), why sending is stopped, and a web session's state.
SELECT n.phone_number_id, n.display_phone_number, n.verified_name, n.provider,
       n.quality_rating, n.messaging_limit, n.bot_enabled, n.flagged_reason,
       n.access_token_enc IS NOT NULL AS has_token,
       s.state AS session_state
  FROM numbers n
  LEFT JOIN web_sessions s ON s.phone_number_id = n.phone_number_id AND s.tenant_id = n.tenant_id
 WHERE n.tenant_id = $1 AND n.removed_at IS NULL
 ORDER BY n.created_at, n.phone_number_id;

-- name: console_number
-- One number of the tenant's for its page, with the tenant's name ({{business_name}} when
-- the number has no verified name) and its web session as GET /v1/numbers/{id}/qr reads it
-- (providers/watchdog.session_json; the session columns NULL without one).
SELECT n.phone_number_id, n.display_phone_number, n.verified_name, n.provider,
       n.quality_rating, n.messaging_limit, n.bot_enabled, n.flagged_reason,
       n.access_token_enc IS NOT NULL AS has_token,
       t.name AS tenant_name,
       s.state, s.reason, s.qr_base64, s.pairing_code, s.state_at
  FROM numbers n
  JOIN tenants t ON t.id = n.tenant_id
  LEFT JOIN web_sessions s ON s.phone_number_id = n.phone_number_id AND s.tenant_id = n.tenant_id
 WHERE n.phone_number_id = $1 AND n.tenant_id = $2 AND n.removed_at IS NULL;

-- name: console_message_days
-- Messages in and out per UTC day from $2 to today, oldest first (a day without messages has
-- no row). Days that ended are kept in message_days: the first view that needs one counts it
-- there (messages_tenant_day, one day's range each), later views read the kept row; the open
-- days are counted on each view. A day counts as ended 10 minutes after midnight: a
-- transaction begun before midnight may still commit messages dated then.
WITH bounds AS (
    SELECT ((now() - interval '10 minutes') AT TIME ZONE 'UTC')::date AS open_from
), kept AS (
    SELECT k.day, k.inbound, k.outbound
      FROM message_days k, bounds b
     WHERE k.tenant_id = $1 AND k.day >= $2::date AND k.day < b.open_from
), missing AS (
    SELECT $2::date + i AS day
      FROM bounds b, generate_series(0, b.open_from - $2::date - 1) i
     WHERE NOT EXISTS (SELECT 1 FROM kept WHERE kept.day = $2::date + i)
), counted AS (
    INSERT INTO message_days AS k (tenant_id, day, inbound, outbound)
    SELECT $1, d.day,
           count(m.created_at) FILTER (WHERE m.direction = 'in'),
           count(m.created_at) FILTER (WHERE m.direction = 'out')
      FROM missing d
      LEFT JOIN messages m
        ON m.tenant_id = $1
       AND m.created_at >= d.day::timestamp AT TIME ZONE 'UTC'
       AND m.created_at < (d.day + 1)::timestamp AT TIME ZONE 'UTC'
     GROUP BY d.day
    -- Two first views at once count the same: the later one writes the same numbers.
    ON CONFLICT (tenant_id, day) DO UPDATE
       SET inbound = excluded.inbound, outbound = excluded.outbound
    RETURNING k.day, k.inbound, k.outbound
), open_days AS (
    SELECT (m.created_at AT TIME ZONE 'UTC')::date AS day,
           count(*) FILTER (WHERE m.direction = 'in') AS inbound,
           count(*) FILTER (WHERE m.direction = 'out') AS outbound
      FROM messages m, bounds b
     WHERE m.tenant_id = $1
       AND m.created_at >= greatest($2::date, b.open_from)::timestamp AT TIME ZONE 'UTC'
     GROUP BY 1
)
SELECT day, inbound, outbound FROM kept
UNION ALL SELECT day, inbound, outbound FROM counted
UNION ALL SELECT day, inbound, outbound FROM open_days
ORDER BY day;
