-- A contact as the API shows it (api/contacts.py contact_json), from the contacts row {arg}.
-- bot_paused is the pause in effect: one past its paused_until no longer counts (and its end
-- is not shown). The assistant reads its conversation through it too (replies.sql), its
-- memory (tags, notes, fields) among it: `{{contact_fields}}` (ai/memory.py).
{arg}.id, {arg}.wa_id, {arg}.user_id, {arg}.name, {arg}.username, {arg}.last_inbound_at,
{arg}.window_closed_at, {arg}.tags, {arg}.notes, {arg}.fields,
({arg}.bot_paused AND ({arg}.paused_until IS NULL OR {arg}.paused_until > now())) AS bot_paused,
CASE WHEN {arg}.bot_paused AND {arg}.paused_until > now() THEN {arg}.paused_until END
    AS paused_until
