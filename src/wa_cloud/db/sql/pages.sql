-- The tenant status page (GET /t/{token}): read-only, every statement scoped by tenant.

-- name: page_tenant
SELECT name, active, link_generation FROM tenants WHERE id = $1;

-- name: page_numbers
-- Whether a token is stored is all the page learns about it: the sealed value is never read.
SELECT phone_number_id, display_phone_number, verified_name, quality_rating, provider,
       bot_enabled, throughput_mps, access_token_enc IS NOT NULL AS has_token
  FROM numbers
 WHERE tenant_id = $1
 ORDER BY created_at, phone_number_id;

-- name: page_message_counts
-- $2 is the start of the UTC day.
SELECT phone_number_id,
       count(*) FILTER (WHERE direction = 'in') AS inbound,
       count(*) FILTER (WHERE direction = 'out') AS outbound
  FROM messages
 WHERE tenant_id = $1 AND created_at >= $2
 GROUP BY phone_number_id;

-- name: page_window_candidates
-- Contacts who wrote since $2 (now minus the window): window.window_state decides which are open.
SELECT phone_number_id, last_inbound_at, window_closed_at
  FROM contacts
 WHERE tenant_id = $1 AND last_inbound_at > $2;
