-- The operator's console pages (console/operator.py): what the admin API's own queries do not
-- already read. Every statement is bounded by a LIMIT or by a list of ids from a bounded page.

-- name: operator_number_counts
-- The registered numbers of the tenants of one page of the tenant list (numbers_tenant).
SELECT tenant_id, count(*) AS numbers FROM numbers
 WHERE tenant_id = ANY($1::uuid[]) AND removed_at IS NULL
 GROUP BY tenant_id;

-- name: operator_numbers
-- Registered numbers, newest first, with their tenant and web session: one tenant's ($1) or
-- every tenant's (NULL), after the cursor ($2, $3), $4 rows. Few per tenant; all of them are
-- one per tenant at most in the thousands, a sort the page can afford.
SELECT n.phone_number_id, n.tenant_id, t.name AS tenant_name, t.active AS tenant_active,
       n.display_phone_number, n.verified_name, n.provider, n.quality_rating,
       n.messaging_limit, n.bot_enabled, n.throughput_mps, n.created_at,
       s.state AS session_state
  FROM numbers n
  JOIN tenants t ON t.id = n.tenant_id
  LEFT JOIN web_sessions s ON s.phone_number_id = n.phone_number_id
 WHERE n.removed_at IS NULL
   AND ($1::uuid IS NULL OR n.tenant_id = $1)
   AND ($2::timestamptz IS NULL OR (n.created_at, n.phone_number_id) < ($2, $3::text))
 ORDER BY n.created_at DESC, n.phone_number_id DESC
 LIMIT $4;

-- name: operator_number_tenant
-- Whose registered number this is: the operator may switch any tenant's bot.
SELECT tenant_id FROM numbers WHERE phone_number_id = $1 AND removed_at IS NULL;

-- name: operator_tenant_choices
-- The tenants offered in a filter's list, by name: the first $1 of them.
SELECT id, name FROM tenants ORDER BY lower(name), id LIMIT $1;

-- name: operator_tenant_names
-- The names of the tenants a page of rows mentions.
SELECT id, name FROM tenants WHERE id = ANY($1::uuid[]);

-- name: operator_usage
-- Model calls and tokens per tenant, model and feature over the UTC days since $1 (token_usage
-- has a row per tenant, number, model, feature and day), the biggest users first.
SELECT u.tenant_id, t.name AS tenant_name, u.model, u.feature,
       sum(u.calls)::bigint AS calls, sum(u.input_tokens)::bigint AS input_tokens,
       sum(u.output_tokens)::bigint AS output_tokens
  FROM token_usage u
  JOIN tenants t ON t.id = u.tenant_id
 WHERE u.day >= $1::date
 GROUP BY u.tenant_id, t.name, u.model, u.feature
 ORDER BY sum(u.input_tokens + u.output_tokens) DESC, t.name, u.model, u.feature
 LIMIT $2;
