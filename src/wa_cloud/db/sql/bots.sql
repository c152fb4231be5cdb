-- The assistant's configuration (ai/config.py, api/bot.py). A bots row of a previous owner of
-- the number (registered again by another tenant) is never read: the join names the tenant.

-- name: get_bot
SELECT n.phone_number_id, n.bot_enabled, {{bot_config:b}}
  FROM numbers n
  LEFT JOIN bots b ON b.phone_number_id = n.phone_number_id AND b.tenant_id = n.tenant_id
 WHERE n.phone_number_id = $1 AND n.tenant_id = $2 AND n.removed_at IS NULL;

-- name: put_bot
-- $3: the sealed key (NULL: none); $4..$24: the columns in ai/config.py COLUMNS order; $25:
-- the tools' sealed header values (NULL: none).
INSERT INTO bots (phone_number_id, tenant_id, api_key_enc, instructions, model, base_url, api,
                  reasoning_effort, temperature, max_output_tokens, history_turns,
                  debounce_seconds, timezone, owner_phones, credits_per_reply, retention_hours,
                  fallback_text, out_of_credits_text, media_unavailable_text, voice_replies,
                  human_takeover_minutes, tools, extract_fields, follow_ups, tool_secrets_enc)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
        $20, $21, $22, $23, $24, $25)
ON CONFLICT (phone_number_id) DO UPDATE
   SET tenant_id = excluded.tenant_id, api_key_enc = excluded.api_key_enc,
       instructions = excluded.instructions, model = excluded.model,
       base_url = excluded.base_url, api = excluded.api,
       reasoning_effort = excluded.reasoning_effort, temperature = excluded.temperature,
       max_output_tokens = excluded.max_output_tokens, history_turns = excluded.history_turns,
       debounce_seconds = excluded.debounce_seconds, timezone = excluded.timezone,
       owner_phones = excluded.owner_phones, credits_per_reply = excluded.credits_per_reply,
       retention_hours = excluded.retention_hours, fallback_text = excluded.fallback_text,
       out_of_credits_text = excluded.out_of_credits_text,
       media_unavailable_text = excluded.media_unavailable_text,
       voice_replies = excluded.voice_replies,
       human_takeover_minutes = excluded.human_takeover_minutes, tools = excluded.tools,
       extract_fields = excluded.extract_fields, follow_ups = excluded.follow_ups,
       tool_secrets_enc = excluded.tool_secrets_enc, updated_at = now();

-- name: set_bot_enabled
UPDATE numbers SET bot_enabled = $3, updated_at = now()
 WHERE phone_number_id = $1 AND tenant_id = $2 AND removed_at IS NULL;

-- name: insert_tool_calls
INSERT INTO tool_calls (tenant_id, phone_number_id, contact_id, reply_id, tool, arguments,
                        status, error, duration_ms)
SELECT $1, $2, $3, $4, u.tool, u.arguments::jsonb, u.status, u.error, u.duration_ms
  FROM unnest($5::text[], $6::text[], $7::int[], $8::text[], $9::int[])
       AS u (tool, arguments, status, error, duration_ms);

-- name: list_tool_calls
-- A number's calls, newest first, a page before the cursor ($3: an id, NULL: the newest).
SELECT tc.id, tc.tool, tc.arguments, tc.status, tc.error, tc.duration_ms, tc.created_at,
       c.wa_id, tc.reply_id
  FROM tool_calls tc
  LEFT JOIN contacts c ON c.id = tc.contact_id
 WHERE tc.phone_number_id = $1 AND tc.tenant_id = $2
   AND ($3::bigint IS NULL OR tc.id < $3)
 ORDER BY tc.id DESC
 LIMIT $4;
