-- A number's assistant configuration as ai/config.py `from_row` reads it, from the bots row
-- {arg} (LEFT JOINed: `configured` says whether there is one).
{arg}.phone_number_id IS NOT NULL AS configured,
{arg}.instructions, {arg}.model, {arg}.base_url, {arg}.api_key_enc, {arg}.api,
{arg}.reasoning_effort, {arg}.temperature::float8 AS temperature, {arg}.max_output_tokens,
{arg}.history_turns, {arg}.debounce_seconds::float8 AS debounce_seconds, {arg}.timezone,
{arg}.owner_phones, {arg}.credits_per_reply, {arg}.retention_hours, {arg}.fallback_text,
{arg}.out_of_credits_text, {arg}.media_unavailable_text, {arg}.voice_replies,
{arg}.human_takeover_minutes::float8 AS human_takeover_minutes, {arg}.tools,
{arg}.extract_fields, {arg}.follow_ups, {arg}.tool_secrets_enc
