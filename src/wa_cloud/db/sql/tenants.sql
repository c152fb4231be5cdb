-- name: insert_tenant
INSERT INTO tenants (name, email) VALUES ($1, $2)
RETURNING id, name, email, active, credits_balance, created_at;

-- name: insert_api_key
INSERT INTO api_keys (tenant_id, key_hash, prefix) VALUES ($1, $2, $3) RETURNING id;

-- name: list_tenants
SELECT id, name, email, active, credits_balance, created_at FROM tenants
 WHERE ($1::timestamptz IS NULL OR (created_at, id) < ($1, $2::uuid))
 ORDER BY created_at DESC, id DESC
 LIMIT $3;

-- name: get_tenant
SELECT id, name, email, active, credits_balance, created_at FROM tenants WHERE id = $1;

-- name: tenant_by_key
SELECT t.id, t.name, t.active FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
 WHERE k.key_hash = $1 AND k.revoked_at IS NULL;

-- name: number_taken
-- Taken while registered; once its owner removed it, whoever Meta accepts a token from for it
-- may register it (the old owner's history stays the old owner's).
SELECT 1 FROM numbers WHERE phone_number_id = $1 AND removed_at IS NULL;

-- name: insert_number
INSERT INTO numbers (phone_number_id, tenant_id, waba_id, display_phone_number, app_id, provider,
                     access_token_enc, pin_enc, verified_name, quality_rating, name_status,
                     code_verification_status, throughput_level, registered, subscribed,
                     verified_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, true, now())
ON CONFLICT (phone_number_id) DO UPDATE
   SET waba_id = excluded.waba_id, display_phone_number = excluded.display_phone_number,
       app_id = excluded.app_id, access_token_enc = excluded.access_token_enc,
       provider = excluded.provider, gateway_url = NULL, gateway_instance = NULL,
       pin_enc = excluded.pin_enc, verified_name = excluded.verified_name,
       quality_rating = excluded.quality_rating, name_status = excluded.name_status,
       code_verification_status = excluded.code_verification_status,
       throughput_level = excluded.throughput_level, registered = excluded.registered,
       subscribed = true, verified_at = now(), removed_at = NULL, updated_at = now(),
       flagged_reason = NULL, flagged_at = NULL,
       -- Another tenant taking the number over starts from the defaults, not the old settings.
       tenant_id = excluded.tenant_id,
       bot_enabled = CASE WHEN numbers.tenant_id = excluded.tenant_id
                          THEN numbers.bot_enabled ELSE false END,
       throughput_mps = CASE WHEN numbers.tenant_id = excluded.tenant_id
                             THEN numbers.throughput_mps ELSE 80 END
 WHERE numbers.removed_at IS NOT NULL
RETURNING phone_number_id, waba_id, display_phone_number, verified_name, quality_rating,
          name_status, code_verification_status, throughput_level, registered, app_id,
          provider, bot_enabled, throughput_mps, created_at;

-- name: insert_web_session_number
-- A web-session number: no WABA, its gateway instead ($4: the gateway's API key, sealed).
INSERT INTO numbers (phone_number_id, tenant_id, display_phone_number, provider,
                     access_token_enc, gateway_url, gateway_instance, throughput_mps,
                     registered, subscribed, verified_at, bot_enabled)
VALUES ($1, $2, $3, 'websession', $4, $5, $6, $7, true, true, now(), false)
ON CONFLICT (phone_number_id) DO UPDATE
   SET tenant_id = excluded.tenant_id, waba_id = NULL, app_id = NULL,
       display_phone_number = excluded.display_phone_number, provider = 'websession',
       access_token_enc = excluded.access_token_enc, pin_enc = NULL,
       gateway_url = excluded.gateway_url, gateway_instance = excluded.gateway_instance,
       throughput_mps = excluded.throughput_mps, verified_name = NULL, quality_rating = NULL,
       name_status = NULL, code_verification_status = NULL, throughput_level = NULL,
       registered = true, subscribed = true, verified_at = now(), removed_at = NULL,
       updated_at = now(), flagged_reason = NULL, flagged_at = NULL,
       bot_enabled = CASE WHEN numbers.tenant_id = excluded.tenant_id
                          THEN numbers.bot_enabled ELSE false END
 -- Only a removed web session's id: a Cloud API number's id is taken back only by a token
 -- Meta accepts for it (register_number), never by naming it here.
 WHERE numbers.removed_at IS NOT NULL AND numbers.provider = 'websession'
RETURNING phone_number_id, waba_id, display_phone_number, verified_name, quality_rating,
          name_status, code_verification_status, throughput_level, registered, app_id,
          provider, bot_enabled, throughput_mps, created_at, 'connecting' AS session_state;

-- name: list_numbers
SELECT phone_number_id, waba_id, display_phone_number, verified_name, quality_rating,
       name_status, code_verification_status, throughput_level, registered, app_id,
       provider, bot_enabled, throughput_mps, created_at,
       (SELECT s.state FROM web_sessions s WHERE s.phone_number_id = numbers.phone_number_id)
       AS session_state
  FROM numbers WHERE tenant_id = $1 AND removed_at IS NULL ORDER BY created_at, phone_number_id;

-- name: insert_app
INSERT INTO apps (app_id, tenant_id, app_secret_enc, verify_token_enc) VALUES ($1, $2, $3, $4)
ON CONFLICT (app_id) DO NOTHING
RETURNING app_id, created_at;

-- name: list_apps
SELECT app_id, created_at FROM apps WHERE tenant_id = $1 ORDER BY created_at, app_id;

-- name: update_app
UPDATE apps SET app_secret_enc = coalesce($3, app_secret_enc),
                verify_token_enc = coalesce($4, verify_token_enc)
 WHERE app_id = $1 AND tenant_id = $2
RETURNING app_id, created_at;

-- name: numbers_of_app
SELECT count(*) FROM numbers WHERE app_id = $1 AND removed_at IS NULL;

-- name: delete_app
DELETE FROM apps WHERE app_id = $1 AND tenant_id = $2;

-- name: tenant_owns_app
SELECT 1 FROM apps WHERE app_id = $1 AND tenant_id = $2;

-- name: waba_owner
-- A WABA belongs to one business: its numbers, and its template and account news, are theirs.
SELECT tenant_id FROM numbers
 WHERE waba_id = $1 AND tenant_id <> $2 AND removed_at IS NULL LIMIT 1;

-- name: get_number
SELECT phone_number_id, waba_id, display_phone_number, verified_name, quality_rating,
       name_status, code_verification_status, throughput_level, registered, app_id,
       provider, bot_enabled, throughput_mps, created_at,
       (SELECT s.state FROM web_sessions s WHERE s.phone_number_id = numbers.phone_number_id)
       AS session_state
  FROM numbers WHERE phone_number_id = $1 AND tenant_id = $2 AND removed_at IS NULL;

-- name: update_number
UPDATE numbers
   SET bot_enabled = coalesce($3, bot_enabled), throughput_mps = coalesce($4, throughput_mps),
       updated_at = now()
 WHERE phone_number_id = $1 AND tenant_id = $2 AND removed_at IS NULL
RETURNING phone_number_id, waba_id, display_phone_number, verified_name, quality_rating,
          name_status, code_verification_status, throughput_level, registered, app_id,
          provider, bot_enabled, throughput_mps, created_at,
          (SELECT s.state FROM web_sessions s WHERE s.phone_number_id = numbers.phone_number_id)
          AS session_state;

-- name: update_tenant
UPDATE tenants
   SET active = coalesce($2, active), name = coalesce($3, name), email = coalesce($4, email),
       updated_at = now()
 WHERE id = $1
RETURNING id, name, email, active, credits_balance, created_at;

-- name: list_keys
SELECT id, prefix, created_at, revoked_at FROM api_keys WHERE tenant_id = $1
 ORDER BY created_at, id;

-- name: revoke_key
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
 WHERE id = $1 AND tenant_id = $2
RETURNING id, prefix, created_at, revoked_at;

-- name: number_secrets
SELECT phone_number_id, waba_id, access_token_enc, provider, gateway_url, gateway_instance
  FROM numbers WHERE phone_number_id = $1 AND tenant_id = $2 AND removed_at IS NULL;

-- name: remove_number
-- History stays; the secrets go; what was still queued fails now instead of leaving days later
-- if the number comes back (a message that may already be at Meta keeps its state).
WITH removed AS (
    UPDATE numbers SET access_token_enc = NULL, pin_enc = NULL, registered = false,
                       subscribed = false, removed_at = now(), updated_at = now()
     WHERE phone_number_id = $1 AND tenant_id = $2
    RETURNING phone_number_id
), library AS (
    -- The assistant's files go with the number: nothing could list or send them again.
    DELETE FROM bot_files f USING removed
     WHERE f.phone_number_id = removed.phone_number_id AND f.tenant_id = $2
), pending AS (
    -- Follow-ups and reminders likewise end now, not when the number comes back.
    UPDATE follow_ups f SET state = 'cancelled', reason = 'the number was removed',
                            finished_at = now(), locked_until = NULL
      FROM removed
     WHERE f.phone_number_id = removed.phone_number_id AND f.tenant_id = $2
       AND f.state IN ('scheduled', 'sending')
)
UPDATE messages m
   SET status = 'failed', last_error = 'the number was removed', lease_token = NULL,
       locked_until = NULL,
       errors = jsonb_build_array(jsonb_build_object(
           'code', NULL, 'title', 'Number removed',
           'message', 'The number was removed before this message was sent.'))
  FROM removed
 WHERE m.phone_number_id = removed.phone_number_id AND m.direction = 'out'
   AND (m.status = 'queued' OR (m.status = 'sending' AND m.dispatched_at IS NULL));

-- name: adopt_orphaned_events
-- Deliveries of the last 7 days (Meta's retry horizon) whose events for this number (or its
-- WABA) were orphaned because it was not registered yet, and that came from the source the
-- number is bound to, go back to the queue; their orphaned rows go, so indexing them again
-- writes the real rows. Indexing is idempotent: the delivery's other events change nothing.
WITH candidates AS (
    SELECT e.id, e.delivery_id FROM events e JOIN deliveries d ON d.id = e.delivery_id
     WHERE e.orphaned AND e.orphan_reason = 'unknown_number' AND e.source = $3
       AND (e.phone_number_id = $1 OR (e.phone_number_id IS NULL AND e.waba_id = $2))
       AND e.created_at > now() - interval '7 days'
       AND d.state = 'processed' AND coalesce(octet_length(d.body), 0) > 0
), dropped AS (
    DELETE FROM events WHERE id IN (SELECT id FROM candidates)
), requeued AS (
    UPDATE deliveries
       SET state = 'pending', run_after = now(), attempts = 0, lease_token = NULL,
           locked_until = NULL, processed_at = NULL
     WHERE id IN (SELECT delivery_id FROM candidates)
    RETURNING id
)
SELECT count(*) FROM requeued, pg_notify('{{channel.deliveries}}', '') AS notified;

-- name: tenant_has_number
-- The tenant's number, or one it had (its contacts there stay its history).
SELECT 1 FROM numbers WHERE phone_number_id = $1 AND tenant_id = $2
UNION ALL
SELECT 1 FROM contacts WHERE phone_number_id = $1 AND tenant_id = $2
LIMIT 1;
