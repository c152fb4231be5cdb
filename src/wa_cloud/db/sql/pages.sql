-- The tenant status page (GET /t/{token}): read-only, every statement scoped by tenant.

-- name: page_tenant
SELECT name, active, link_generation FROM tenants WHERE id = $1;

-- name: page_numbers
-- Whether a token is stored is all the page learns about it: the sealed value is never read.
-- A web session's state, and its QR code while it waits for a scan.
SELECT n.phone_number_id, n.display_phone_number, n.verified_name, n.quality_rating,
       n.provider, n.bot_enabled, n.throughput_mps,
       n.access_token_enc IS NOT NULL AS has_token,
       s.state AS session_state, s.qr_base64, s.pairing_code
  FROM numbers n
  LEFT JOIN web_sessions s ON s.phone_number_id = n.phone_number_id AND s.tenant_id = n.tenant_id
 WHERE n.tenant_id = $1
 ORDER BY n.created_at, n.phone_number_id;

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
