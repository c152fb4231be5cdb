-- The assistant's configuration (ai/config.py, api/bot.py). A bots row of a previous owner of
-- the number (registered again by another tenant) is never read: the join names the tenant.

-- name: get_bot
SELECT n.phone_number_id, n.bot_enabled, {{bot_config:b}}
  FROM numbers n
  LEFT JOIN bots b ON b.phone_number_id = n.phone_number_id AND b.tenant_id = n.tenant_id
 WHERE n.phone_number_id = $1 AND n.tenant_id = $2 AND n.removed_at IS NULL;

-- name: put_bot
-- $3: the sealed key (NULL: none); $4..$22: the columns in ai/config.py COLUMNS order.
INSERT INTO bots (phone_number_id, tenant_id, api_key_enc, instructions, model, base_url, api,
                  reasoning_effort, temperature, max_output_tokens, history_turns,
                  debounce_seconds, timezone, owner_phones, credits_per_reply, retention_hours,
                  fallback_text, out_of_credits_text, media_unavailable_text, voice_replies,
                  human_takeover_minutes, tools)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
        $20, $21, $22)
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
       updated_at = now();

-- name: set_bot_enabled
UPDATE numbers SET bot_enabled = $3, updated_at = now()
 WHERE phone_number_id = $1 AND tenant_id = $2 AND removed_at IS NULL;
