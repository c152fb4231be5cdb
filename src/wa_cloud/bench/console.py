"""`wa-cloud bench console`: the console's pages, timed against a big seeded database.

docs/design.md, "Performance targets": console pages p95 under 100 ms with 10,000 conversations
and 1,000,000 messages.

The run, all on loopback: an embedded PostgreSQL with the migrations and the web process as
production runs it (`wa-cloud serve --no-worker`: pages are served there; nothing a worker would
do is measured). A tenant is created through the API (`POST /v1/admin/tenants`, for its API
key); everything else is written by SQL in the database alone (`generate_series`, no rows cross
the wire), so 1,000,000 messages take about a minute on two cores:

- the tenant's cloud number with its assistant and its WABA's templates, and `TENANTS` other
  tenants with a number each (the operator's lists have more than one row);
- `--conversations` contacts with names (a few without), wa_ids, tags, notes and fields, each
  active at its own time over eight weeks (most recently, more of them); three in ten have
  unread messages or were never opened in the console (`read_at`), a few have the bot paused;
- `--messages` messages over those contacts, skewed (the first contact, the busiest and the most
  recent, has about 1 % of them; the last about half the mean): in and out, text with words
  (one text in a hundred carries `SEARCH_WORD`), images with captions and descriptions, voice
  notes with transcripts, videos and documents; outbound ones sent, delivered, read or failed
  (with Meta's error), by the bot, a person or a campaign; inbound media has its `media` row;
- token usage per day, model and feature, a credit ledger (a debit per ten messages, a grant
  every ten days) and an event log, orphaned events among them.

The messages' non-unique indexes are dropped for the load and built again after it (the same
definitions, read from the catalogue: a build is much faster than a million inserts into a GIN
index), then the tables are vacuumed and analysed, as autovacuum would have them.

Then the business (its API key) and the operator (the admin token) sign in through the forms,
as a browser does (the sign-in page's nonce cookie, POST with an Origin header), and each page
is requested `WARMUP` times unmeasured, `--requests` times one after another and `--requests`
times with `--concurrency` in flight. A page must answer 200: any other status is an error,
counted and never timed. The target holds when every page's p95 is under 100 ms with no error,
in both passes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import quote
from uuid import UUID

import asyncpg
import httpx

from wa_cloud.bench.harness import (
    HOST,
    Report,
    StartFailed,
    embedded_database,
    free_port,
    local_server,
    progress,
    run_bench,
    say,
    serve_launch,
    wa_cloud_env,
)
from wa_cloud.bench.send import create_tenant
from wa_cloud.bench.stats import percentile
from wa_cloud.db.pool import connect

TARGET_P95_MS: Final = 100.0
WARMUP: Final = 5  # requests per page before the measured ones: templates compiled, caches warm
HTTP_TIMEOUT: Final = 30.0
TENANTS: Final = 30  # other tenants, each with a number: the operator's lists
NUMBER: Final = "106540359000001"
DISPLAY: Final = "15550190001"
WABA_ID: Final = "102290129340399"
WA_ID_PREFIX: Final = "4477"
SEARCH_WORD: Final = "refund"
SENTENCES: Final = 10_000
MAX_CONVERSATIONS: Final = 1_000_000
MAX_MESSAGES: Final = 50_000_000
MAX_REQUESTS: Final = 100_000
MAX_CONCURRENCY: Final = 64

FIRST_NAMES: Final = (
    "Ana", "Ben", "Carla", "David", "Eva", "Farid", "Grace", "Hugo", "Ines", "Jonas",
    "Kemi", "Luca", "Maria", "Nadia", "Omar", "Paula", "Quentin", "Rosa", "Samir", "Tara",
    "Umar", "Vera", "Wei", "Ximena", "Yusuf", "Zoe", "Amara", "Bruno", "Chloe", "Dmitri",
    "Elif", "Felipe", "Hana", "Ivan", "Joao", "Kaito", "Leila", "Mateo", "Noor", "Oscar",
)  # fmt: skip
LAST_NAMES: Final = (
    "Silva", "Okafor", "Nguyen", "Schmidt", "Garcia", "Kowalski", "Haddad", "Tanaka",
    "Oliveira", "Mensah", "Rossi", "Dubois", "Novak", "Kaya", "Jensen", "Moreau", "Costa",
    "Ibrahim", "Petrov", "Santos", "Fischer", "Yilmaz", "Andersen", "Lopez", "Bauer",
    "Mwangi", "Ferreira", "Sato", "Ahmed", "Kim", "Murphy", "Weber", "Pereira", "Ozturk",
    "Nielsen", "Romero", "Wagner", "Banda", "Castro", "Horvat",
)  # fmt: skip
# What customers and businesses write about; SEARCH_WORD is added to one message in a hundred.
WORDS: Final = (
    "hello", "hi", "thanks", "thank", "you", "please", "order", "delivery", "today",
    "tomorrow", "when", "where", "is", "my", "the", "a", "can", "I", "we", "your", "price",
    "size", "colour", "available", "stock", "shop", "open", "hours", "address", "payment",
    "card", "cash", "invoice", "receipt", "booking", "table", "appointment", "time", "morning",
    "afternoon", "evening", "confirm", "cancel", "change", "return", "exchange", "broken",
    "late", "tracking", "number", "parcel", "courier", "pickup", "store", "menu", "vegan",
    "gluten", "free", "discount", "code", "offer", "weekend", "monday", "friday", "ready",
    "sent", "received", "photo", "picture", "voice", "call", "back", "soon", "great", "perfect",
    "okay", "sure", "sorry", "problem", "help", "question", "account", "login", "password",
    "new", "old", "blue", "red", "black", "white", "small", "medium", "large", "shoes",
    "shirt", "dress", "jacket", "pizza", "coffee", "cake", "flowers", "room", "night", "guests",
)  # fmt: skip


# --- seeding ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seeded:
    """What the pages are asked for, and what the database holds."""

    tenant_id: UUID
    phone_number_id: str
    busy_contact_id: int  # the conversation with the most messages, also the most recent
    busy_messages: int
    closed_contact_id: int  # a typical conversation whose 24-hour window has closed
    closed_messages: int
    name_query: str  # a last name some contacts have
    name_matches: int
    word_matches: int  # messages with SEARCH_WORD
    number_query: str  # a contact's whole wa_id
    counts: dict[str, int]
    seconds: float


OTHER_TENANTS = """
WITH made AS (
    INSERT INTO tenants (name, email, credits_balance, active, created_at)
    SELECT 'Bench client ' || g, 'owner' || g || '@client.example', 1000 * g, g % 10 <> 0,
           now() - interval '1 day' * g
      FROM generate_series(1, $1::int) g
    RETURNING id, name
)
INSERT INTO numbers (phone_number_id, tenant_id, waba_id, display_phone_number, verified_name,
                     quality_rating, messaging_limit, provider, registered, subscribed,
                     bot_enabled, throughput_mps)
SELECT '1065403591' || lpad(row_number() OVER (ORDER BY id)::text, 5, '0'), id, $2,
       '1555019' || lpad(row_number() OVER (ORDER BY id)::text, 4, '0'), name,
       (ARRAY['GREEN', 'YELLOW', 'RED'])[1 + (row_number() OVER (ORDER BY id)) % 3],
       'TIER_1K', 'cloud', true, true, (row_number() OVER (ORDER BY id)) % 2 = 0, 80
  FROM made
"""

MAIN_NUMBER = """
INSERT INTO numbers (phone_number_id, tenant_id, waba_id, display_phone_number, verified_name,
                     quality_rating, messaging_limit, provider, registered, subscribed,
                     bot_enabled, throughput_mps)
VALUES ($2, $1, $3, $4, 'Bench Shop', 'GREEN', 'TIER_10K', 'cloud', true, true, true, 80)
"""

MAIN_BOT = """
INSERT INTO bots (phone_number_id, tenant_id, instructions, model, owner_phones)
VALUES ($2, $1, 'You answer for Bench Shop, {{business_name}}. Be brief and kind.',
        'gpt-4.1-mini', ARRAY['447700900001'])
"""

# Sentences the messages' texts are picked from: built once, far cheaper than words per row.
SENTENCE_TABLE = """
CREATE TEMP TABLE bench_sentences (n int PRIMARY KEY, text text NOT NULL)
"""
SENTENCES_SQL = """
INSERT INTO bench_sentences (n, text)
SELECT s,
       (SELECT string_agg(($1::text[])[1 + floor(random() * cardinality($1::text[]))::int], ' ')
          FROM generate_series(1, 3 + s % 10)) AS text
  FROM generate_series(0, $2::int - 1) s
"""

CONTACTS = """
INSERT INTO contacts (tenant_id, phone_number_id, wa_id, name, tags, notes, fields, created_at,
                      updated_at)
SELECT $1, $2, $3 || lpad(g::text, 8, '0'),
       CASE WHEN g % 10 <> 3 THEN ($4::text[])[1 + g % cardinality($4::text[])] || ' '
            || ($5::text[])[1 + (g / cardinality($4::text[])) % cardinality($5::text[])] END,
       CASE g % 7 WHEN 0 THEN ARRAY['vip'] WHEN 1 THEN ARRAY['lead', 'newsletter']
                  ELSE '{}'::text[] END,
       CASE WHEN g % 13 = 0 THEN 'Prefers to be written to in the morning.' END,
       CASE WHEN g % 5 = 0 THEN jsonb_build_object('city', 'Lisbon', 'plan', 'gold')
            ELSE '{}'::jsonb END,
       now() - interval '90 days', now()
  FROM generate_series(1, $6::int) g
"""

# Each contact's last activity: the first one now, the rest over eight weeks, most of them
# recently (random()^2). Its messages lie in the 30 days before it.
CONTACT_TABLE = """
CREATE TEMP TABLE bench_contacts (idx int PRIMARY KEY, id bigint NOT NULL, wa_id text NOT NULL,
                                  active_at timestamptz NOT NULL)
"""
CONTACT_ROWS = """
INSERT INTO bench_contacts (idx, id, wa_id, active_at)
SELECT idx, id, wa_id,
       CASE WHEN idx = 1 THEN now() - interval '2 minutes'
            ELSE now() - interval '56 days' * power(random(), 2) END AS active_at
  FROM (SELECT row_number() OVER (ORDER BY id) AS idx, id, wa_id
          FROM contacts WHERE tenant_id = $1 AND phone_number_id = $2) c
"""

MESSAGE_INDEXES = """
SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE i.indrelid = 'messages'::regclass
   AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
"""

# Contact idx = 1 + floor(N * random()^2): contact 1 gets sqrt(1/N) of the messages (1 % of a
# million over 10,000), the last about half the mean. The volatile values are drawn once per
# row in a materialized CTE, so no join or projection draws them again.
MESSAGES = """
WITH p AS MATERIALIZED (
    SELECT g, 1 + floor($3::int * power(random(), 2))::int AS idx, random() AS age,
           CASE WHEN random() < 0.5 THEN 'in' ELSE 'out' END AS direction,
           random() AS kind
      FROM generate_series(1, $4::int) g
)
INSERT INTO messages (tenant_id, phone_number_id, contact_id, wamid, direction, type, text,
                      media_text, payload, status, errors, sent_at, status_at, created_at,
                      recipient, author, accepted_at, dispatched_at)
SELECT $1, $2, c.id, m.wamid, p.direction, k.type, m.text, m.media_text,
       CASE WHEN p.direction = 'in'
            THEN jsonb_build_object('from', c.wa_id, 'id', m.wamid, 'type', k.type,
                                    'timestamp', extract(epoch FROM m.at)::bigint::text)
            ELSE jsonb_build_object('messaging_product', 'whatsapp', 'to', c.wa_id,
                                    'type', k.type)
       END || jsonb_build_object(k.type, m.content),
       m.status,
       CASE WHEN m.status = 'failed' THEN jsonb_build_array(jsonb_build_object(
            'code', 131047, 'title', 'Re-engagement message',
            'message', 'Re-engagement message',
            'error_data', jsonb_build_object('details', 'Message failed to send because more '
                || 'than 24 hours have passed since the customer last replied to this number.')))
            ELSE '[]'::jsonb END,
       CASE WHEN p.direction = 'in' THEN m.at - interval '2 seconds'
            ELSE m.at + interval '1 second' END,
       CASE WHEN p.direction = 'out' THEN m.at + interval '5 seconds' END,
       m.at,
       CASE WHEN p.direction = 'out' THEN c.wa_id END,
       CASE WHEN p.direction = 'out'
            THEN CASE WHEN p.g % 20 = 0 THEN 'campaign' WHEN p.g % 3 = 0 THEN 'human'
                      ELSE 'bot' END END,
       CASE WHEN p.direction = 'out' THEN m.at + interval '800 milliseconds' END,
       CASE WHEN p.direction = 'out' THEN m.at + interval '200 milliseconds' END
  FROM p
  JOIN bench_contacts c ON c.idx = p.idx
  JOIN bench_sentences s ON s.n = p.g % $5::int
 CROSS JOIN LATERAL (
    SELECT CASE WHEN p.kind < 0.90 THEN 'text' WHEN p.kind < 0.94 THEN 'image'
                WHEN p.kind < 0.98 THEN 'audio' WHEN p.kind < 0.99 THEN 'video'
                ELSE 'document' END AS type
 ) k
 CROSS JOIN LATERAL (
    SELECT 'wamid.BENCH' || lpad(p.g::text, 10, '0') AS wamid,
           c.active_at - interval '30 days' * p.age AS at,
           CASE WHEN k.type = 'text'
                THEN s.text || CASE WHEN p.g % 100 = 7 THEN ' ' || $6::text ELSE '' END
                WHEN k.type IN ('image', 'video') AND p.g % 2 = 0 THEN s.text END AS text,
           CASE WHEN p.direction = 'in' AND k.type = 'audio' THEN 'Transcript: ' || s.text
                WHEN p.direction = 'in' AND k.type = 'image' THEN 'The photo shows ' || s.text
           END AS media_text,
           CASE WHEN p.direction = 'in' THEN 'received'
                WHEN p.g % 100 < 3 THEN 'failed' WHEN p.g % 100 < 15 THEN 'sent'
                WHEN p.g % 100 < 40 THEN 'delivered' ELSE 'read' END AS status,
           CASE WHEN k.type = 'text' THEN jsonb_build_object('body', s.text
                    || CASE WHEN p.g % 100 = 7 THEN ' ' || $6::text ELSE '' END)
                ELSE jsonb_build_object('id', 'bench-media-' || p.g, 'mime_type',
                    CASE k.type WHEN 'image' THEN 'image/jpeg'
                                WHEN 'audio' THEN 'audio/ogg; codecs=opus'
                                WHEN 'video' THEN 'video/mp4' ELSE 'application/pdf' END)
           END AS content
 ) m
"""

# The window and the unread counts follow from the messages; of every 20 contacts 14 were read
# up to their last message, 3 have a few unread, 3 were never opened in the console; the busiest
# one has its last ten minutes unread.
CONTACT_STATE = """
UPDATE contacts c
   SET last_inbound_at = l.last_in,
       read_at = CASE WHEN b.idx = 1 THEN l.last_in - interval '10 minutes'
                      WHEN b.idx % 20 < 14 THEN l.last_in
                      WHEN b.idx % 20 < 17 THEN l.last_in - interval '1 hour' * (1 + b.idx % 5)
                 END,
       bot_paused = b.idx % 50 = 0,
       paused_until = CASE WHEN b.idx % 50 = 1 THEN now() + interval '30 minutes' END,
       paused_by = CASE WHEN b.idx % 50 = 1 THEN 'human' END
  FROM bench_contacts b
  LEFT JOIN (SELECT contact_id, max(sent_at) AS last_in FROM messages
              WHERE tenant_id = $1 AND direction = 'in' GROUP BY contact_id) l
    ON l.contact_id = b.id
 WHERE c.id = b.id
"""

MEDIA = """
INSERT INTO media (tenant_id, phone_number_id, media_id, message_id, mime_type, size, state,
                   created_at, run_after)
SELECT tenant_id, phone_number_id, payload -> type ->> 'id', id,
       payload -> type ->> 'mime_type', 40000 + length(id::text) * 100, 'stored', created_at,
       created_at
  FROM messages
 WHERE tenant_id = $1 AND direction = 'in' AND type IN ('image', 'audio', 'video', 'document')
"""

TOKEN_USAGE = """
INSERT INTO token_usage (tenant_id, phone_number_id, model, feature, day, calls, input_tokens,
                         output_tokens)
SELECT n.tenant_id, n.phone_number_id, model, feature, current_date - d,
       10 + (d * 7 + length(feature)) % 90, 4000 + d * 31, 900 + d * 11
  FROM numbers n
 CROSS JOIN generate_series(0, 59) d
 CROSS JOIN unnest(ARRAY['gpt-4.1-mini', 'gemini-2.5-flash']) model
 CROSS JOIN unnest(ARRAY['reply', 'transcription', 'vision', 'speech', 'extraction',
                         'follow_up']) feature
 WHERE n.phone_number_id = $1
    OR (n.phone_number_id <> $1 AND model = 'gpt-4.1-mini' AND feature = 'reply')
"""

# A grant every ten days and a reply's debit per ten messages, in time order, the balance
# running through them; the tenant's balance is the last one.
LEDGER = """
WITH entries AS (
    SELECT now() - interval '86 days' + interval '10 days' * g AS at, 50000::bigint AS amount,
           'grant' AS reason, NULL::text AS number, g AS n
      FROM generate_series(0, 8) g
    UNION ALL
    SELECT now() - interval '86 days' + interval '86 days' * (g::float8 / $3::int), -2,
           'reply', $2, 100 + g
      FROM generate_series(1, $3::int) g
), running AS (
    SELECT *, sum(amount) OVER (ORDER BY at, n) AS after FROM entries
), written AS (
    INSERT INTO credit_ledger (tenant_id, amount, balance_before, balance_after, reason,
                               phone_number_id, created_at)
    SELECT $1, amount, after - amount, after, reason, number, at FROM running ORDER BY at, n
    RETURNING balance_after, created_at
)
UPDATE tenants SET credits_balance = (SELECT balance_after FROM written
                                       ORDER BY created_at DESC LIMIT 1)
 WHERE id = $1
"""

OTHER_LEDGERS = """
INSERT INTO credit_ledger (tenant_id, amount, balance_before, balance_after, reason, created_at)
SELECT id, credits_balance, 0, credits_balance, 'grant', created_at
  FROM tenants WHERE id <> $1 AND credits_balance > 0
"""

# 70 % the tenant's, 25 % the other tenants', 5 % orphaned (no number of ours).
EVENTS = """
INSERT INTO events (tenant_id, phone_number_id, waba_id, field, kind, orphaned, payload,
                    dedup_key, created_at, source, orphan_reason)
SELECT CASE WHEN g % 20 = 0 THEN NULL WHEN g % 20 < 6 THEN o.tenant_id ELSE $1 END,
       CASE WHEN g % 20 = 0 THEN '1999' || g WHEN g % 20 < 6 THEN o.phone_number_id
            ELSE $2 END,
       $3, f.field, f.kind, g % 20 = 0,
       jsonb_build_object('field', f.field, 'value', jsonb_build_object('event', f.kind)),
       decode(md5('bench-event-' || g), 'hex'),
       now() - interval '86 days' * (g::float8 / $4::int), 'meta',
       CASE WHEN g % 20 = 0 THEN 'unknown_number' END
  FROM generate_series(1, $4::int) g
  JOIN (SELECT row_number() OVER (ORDER BY phone_number_id) - 1 AS k, tenant_id,
               phone_number_id
          FROM numbers WHERE phone_number_id <> $2) o
    ON o.k = g % $5::int
  JOIN (VALUES (0, 'message_template_status_update', 'APPROVED'),
               (1, 'message_template_status_update', 'REJECTED'),
               (2, 'phone_number_quality_update', 'FLAGGED'),
               (3, 'account_update', 'ACCOUNT_VIOLATION'),
               (4, 'phone_number_quality_update', 'TIER_10K'),
               (5, 'messages', 'unreadable_message')) f (k, field, kind)
    ON f.k = g % 6
"""

COUNTS = """
SELECT (SELECT count(*) FROM contacts WHERE tenant_id = $1) AS conversations,
       (SELECT count(*) FROM messages WHERE tenant_id = $1) AS messages,
       (SELECT count(*) FROM media WHERE tenant_id = $1) AS media,
       (SELECT count(*) FROM token_usage) AS token_usage,
       (SELECT count(*) FROM credit_ledger) AS credit_ledger,
       (SELECT count(*) FROM events) AS events,
       (SELECT count(*) FROM tenants) AS tenants,
       (SELECT count(*) FROM numbers) AS numbers
"""

# The busiest conversation, and a typical one (about the mean's messages) whose window closed
# two days ago or more: its composer offers the templates.
CONVERSATIONS = """
WITH sizes AS (
    SELECT contact_id, count(*) AS n FROM messages WHERE tenant_id = $1 GROUP BY contact_id
)
SELECT (SELECT contact_id FROM sizes ORDER BY n DESC, contact_id LIMIT 1) AS busy_id,
       (SELECT max(n) FROM sizes) AS busy_n,
       closed.contact_id AS closed_id, closed.n AS closed_n
  FROM (SELECT 1) one
  LEFT JOIN LATERAL (
       SELECT s.contact_id, s.n FROM sizes s JOIN contacts c ON c.id = s.contact_id
        WHERE c.last_inbound_at < now() - interval '2 days'
        ORDER BY abs(s.n - $2::float8), s.contact_id LIMIT 1) closed ON true
"""

TEMPLATES = """
INSERT INTO templates (waba_id, name, language, template_id, status, category, parameter_format,
                       components)
SELECT $1, 'bench_notice_' || g, CASE WHEN g % 4 = 0 THEN 'pt_BR' ELSE 'en_US' END,
       '9000000' || g,
       CASE g % 10 WHEN 8 THEN 'PENDING' WHEN 9 THEN 'REJECTED' ELSE 'APPROVED' END,
       CASE WHEN g % 3 = 0 THEN 'MARKETING' ELSE 'UTILITY' END, 'POSITIONAL',
       jsonb_build_array(jsonb_build_object(
           'type', 'BODY', 'text', 'Hello {{1}}, your order {{2}} is ready for pickup.',
           'example', jsonb_build_object('body_text', jsonb_build_array(
               jsonb_build_array('Ana', 'A-1001')))))
  FROM generate_series(1, 20) g
"""

WORD_MATCHES = """
SELECT count(*) FROM messages
 WHERE tenant_id = $1 AND to_tsvector('simple', coalesce(text, '') || ' '
       || coalesce(media_text, '')) @@ plainto_tsquery('simple', $2)
"""

VACUUMED = ("messages", "contacts", "media", "credit_ledger", "events", "token_usage", "tenants")


async def _timed(conn: asyncpg.Connection, what: str, sql: str, *args: Any) -> None:
    began = time.monotonic()
    await conn.execute(sql, *args)
    progress("console", f"  {what}: {time.monotonic() - began:.1f} s")


async def _load_messages(
    conn: asyncpg.Connection, tenant_id: UUID, args: argparse.Namespace
) -> None:
    """The messages with their non-unique indexes dropped, then built again as they were."""
    indexes = [(r["name"], r["definition"]) for r in await conn.fetch(MESSAGE_INDEXES)]
    for name, _ in indexes:
        await conn.execute(f'DROP INDEX "{name}"')
    sentences = min(SENTENCES, max(1, args.messages))
    await conn.execute(SENTENCE_TABLE)
    await _timed(conn, "sentences", SENTENCES_SQL, list(WORDS), sentences)
    await _timed(
        conn,
        f"{args.messages} messages",
        MESSAGES,
        tenant_id,
        NUMBER,
        args.conversations,
        args.messages,
        sentences,
        SEARCH_WORD,
    )
    began = time.monotonic()
    for _, definition in indexes:
        await conn.execute(definition)
    progress("console", f"  {len(indexes)} indexes built again: {time.monotonic() - began:.1f} s")


async def seed(conn: asyncpg.Connection, tenant_id: UUID, args: argparse.Namespace) -> Seeded:
    """Everything the pages show, written in the database; `tenant_id` exists already."""
    began = time.monotonic()
    # Triggers off for the load (the console's NOTIFY per statement, nobody listens yet) and
    # foreign keys unchecked: every row here references rows written just before.
    await conn.execute("SET session_replication_role = replica")
    await conn.execute("SET maintenance_work_mem = '512MB'")
    await conn.execute("SET synchronous_commit = off")
    await conn.execute("SELECT setseed(0.14)")  # the same data every run
    await conn.execute(MAIN_NUMBER, tenant_id, NUMBER, WABA_ID, DISPLAY)
    await conn.execute(MAIN_BOT, tenant_id, NUMBER)
    await conn.execute(TEMPLATES, WABA_ID)
    await conn.execute(OTHER_TENANTS, TENANTS, WABA_ID)
    await _timed(
        conn,
        f"{args.conversations} contacts",
        CONTACTS,
        tenant_id,
        NUMBER,
        WA_ID_PREFIX,
        list(FIRST_NAMES),
        list(LAST_NAMES),
        args.conversations,
    )
    await conn.execute(CONTACT_TABLE)
    await conn.execute(CONTACT_ROWS, tenant_id, NUMBER)
    await _load_messages(conn, tenant_id, args)
    await _timed(conn, "contacts' window and reads", CONTACT_STATE, tenant_id)
    await _timed(conn, "media rows", MEDIA, tenant_id)
    await conn.execute(TOKEN_USAGE, NUMBER)
    await _timed(conn, "credit ledger", LEDGER, tenant_id, NUMBER, max(1, args.messages // 10))
    await conn.execute(OTHER_LEDGERS, tenant_id)
    events = max(100, args.messages // 50)
    await _timed(conn, f"{events} events", EVENTS, tenant_id, NUMBER, WABA_ID, events, TENANTS)
    await conn.execute("RESET session_replication_role")
    vacuumed = time.monotonic()
    await conn.execute(f"VACUUM (ANALYZE) {', '.join(VACUUMED)}")
    await conn.execute("ANALYZE")
    progress("console", f"  vacuum and analyze: {time.monotonic() - vacuumed:.1f} s")
    return await _describe(conn, tenant_id, time.monotonic() - began)


async def _describe(conn: asyncpg.Connection, tenant_id: UUID, seconds: float) -> Seeded:
    counts = dict(await conn.fetchrow(COUNTS, tenant_id))
    picked = await conn.fetchrow(
        CONVERSATIONS, tenant_id, counts["messages"] / max(1, counts["conversations"])
    )
    if picked["busy_id"] is None:
        raise StartFailed("seeding wrote no messages")
    name_query = LAST_NAMES[1]
    name_matches = await conn.fetchval(
        "SELECT count(*) FROM contacts WHERE tenant_id = $1 AND name ILIKE '%' || $2 || '%'",
        tenant_id,
        name_query,
    )
    number_query = await conn.fetchval(
        "SELECT wa_id FROM contacts WHERE tenant_id = $1 ORDER BY id OFFSET $2 LIMIT 1",
        tenant_id,
        counts["conversations"] // 2,
    )
    return Seeded(
        tenant_id=tenant_id,
        phone_number_id=NUMBER,
        busy_contact_id=picked["busy_id"],
        busy_messages=picked["busy_n"],
        # With so few conversations that none closed, the busiest stands in.
        closed_contact_id=picked["closed_id"] or picked["busy_id"],
        closed_messages=picked["closed_n"] or picked["busy_n"],
        name_query=name_query,
        name_matches=name_matches,
        word_matches=await conn.fetchval(WORD_MATCHES, tenant_id, SEARCH_WORD),
        number_query=number_query,
        counts=counts,
        seconds=seconds,
    )


# --- the pages ----------------------------------------------------------------------------------

Who = Literal["business", "operator"]


@dataclass(frozen=True, slots=True)
class Page:
    name: str
    who: Who
    path: str
    fragment: bool = False  # requested as console.js does, with `x-console-fragment: 1`


def pages(seeded: Seeded) -> list[Page]:
    """The pages of design.md's console as the URL plan names them, with the busiest thread."""
    number, busy = seeded.phone_number_id, seeded.busy_contact_id
    thread = f"/console/inbox/{number}/{busy}"
    return [
        Page("inbox", "business", f"/console/inbox?number={number}"),
        Page("inbox list", "business", f"/console/inbox/{number}/list", fragment=True),
        Page("thread", "business", thread),
        Page("thread messages", "business", f"{thread}/messages", fragment=True),
        Page("contact panel", "business", f"{thread}/panel", fragment=True),
        Page("thread closed", "business", f"/console/inbox/{number}/{seeded.closed_contact_id}"),
        Page(
            "search name",
            "business",
            f"/console/inbox?number={number}&q={quote(seeded.name_query)}",
        ),
        Page("search word", "business", f"/console/inbox?number={number}&q={SEARCH_WORD}"),
        Page(
            "search number", "business", f"/console/inbox?number={number}&q={seeded.number_query}"
        ),
        Page("my numbers", "business", "/console/my-numbers"),
        Page("my number", "business", f"/console/my-numbers/{number}"),
        Page("my usage", "business", "/console/my-usage"),
        Page("tenants", "operator", "/console/tenants"),
        Page("tenant", "operator", f"/console/tenants/{seeded.tenant_id}"),
        Page("numbers", "operator", "/console/numbers"),
        Page("events", "operator", "/console/events"),
        Page("usage", "operator", "/console/usage"),
    ]


_NONCE = re.compile(r'name="nonce" value="([^"]+)"')


async def sign_in(client: httpx.AsyncClient, token: str) -> None:
    """As a browser does: the form's nonce (also in its cookie), then the POST from our origin;
    the session cookie stays in `client`."""
    form = await client.get("/console/signin")
    found = _NONCE.search(form.text) if form.status_code == 200 else None
    if found is None:
        raise StartFailed(f"GET /console/signin: HTTP {form.status_code}, no sign-in form")
    signed = await client.post(
        "/console/signin",
        data={"nonce": found.group(1), "token": token, "next": "/console/"},
        headers={"origin": str(client.base_url).rstrip("/")},
    )
    if signed.status_code != 303 or "wa_console" not in client.cookies:
        raise StartFailed(f"POST /console/signin: HTTP {signed.status_code}, not signed in")


@dataclass(slots=True)
class Timings:
    """One page's requests of one pass: the 200s' durations, the rest by status."""

    seconds: list[float] = field(default_factory=list)  # 200s only
    errors: dict[str, int] = field(default_factory=dict)  # status (or exception) -> count
    first_error: str | None = None

    def figures(self) -> dict[str, Any]:
        ordered = sorted(self.seconds)
        shown: dict[str, Any] = {"count": len(ordered), "errors": sum(self.errors.values())}
        if ordered:
            shown |= {
                "p50": round(percentile(ordered, 0.50) * 1000, 2),
                "p95": round(percentile(ordered, 0.95) * 1000, 2),
                "max": round(ordered[-1] * 1000, 2),
            }
        if self.errors:
            shown["statuses"] = dict(self.errors)
        return shown

    def held(self) -> bool:
        if self.errors or not self.seconds:
            return False
        return percentile(sorted(self.seconds), 0.95) * 1000 < TARGET_P95_MS


@dataclass(frozen=True, slots=True)
class Measured:
    page: Page
    first: Timings  # the first request, before the warm-up's others
    sequential: Timings
    concurrent: Timings


async def _request(client: httpx.AsyncClient, page: Page, into: Timings | None) -> None:
    headers = {"x-console-fragment": "1"} if page.fragment else None
    began = time.perf_counter()
    try:
        response = await client.get(page.path, headers=headers)
    except httpx.HTTPError as exc:
        outcome, detail = type(exc).__name__, repr(exc)
    else:
        elapsed = time.perf_counter() - began
        if response.status_code == 200:
            if into is not None:
                into.seconds.append(elapsed)
            return
        outcome = str(response.status_code)
        detail = f"HTTP {response.status_code} {response.headers.get('location', '')}".strip()
    if into is not None:
        into.errors[outcome] = into.errors.get(outcome, 0) + 1
        into.first_error = into.first_error or detail


async def time_page(
    client: httpx.AsyncClient, page: Page, requests: int, concurrency: int
) -> Measured:
    """WARMUP requests (the first one's time kept apart: the page's first view, what a cache
    behind it costs), then `requests` one at a time, then `requests` with `concurrency` in
    flight."""
    first = Timings()
    await _request(client, page, first)
    for _ in range(WARMUP - 1):
        await _request(client, page, None)
    sequential = Timings()
    for _ in range(requests):
        await _request(client, page, sequential)
    concurrent = Timings()
    left = iter(range(requests))

    async def one_in_flight() -> None:
        for _ in left:
            await _request(client, page, concurrent)

    await asyncio.gather(*(one_in_flight() for _ in range(concurrency)))
    return Measured(page, first, sequential, concurrent)


async def measure(
    base_url: str, keys: dict[Who, str], seeded: Seeded, requests: int, concurrency: int
) -> list[Measured]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    measured: list[Measured] = []
    async with contextlib.AsyncExitStack() as stack:
        clients: dict[Who, httpx.AsyncClient] = {}
        for who, token in keys.items():
            client = await stack.enter_async_context(
                httpx.AsyncClient(base_url=base_url, timeout=HTTP_TIMEOUT, limits=limits)
            )
            await sign_in(client, token)
            clients[who] = client
        for page in pages(seeded):
            done = await time_page(clients[page.who], page, requests, concurrency)
            progress(
                "console",
                f"  {page.name}: first {_brief(done.first)}; then {_brief(done.sequential)}; "
                f"x{concurrency}: {_brief(done.concurrent)}",
            )
            measured.append(done)
    return measured


def _brief(timings: Timings) -> str:
    shown = timings.figures()
    if "p95" not in shown:
        return f"no 200 answer ({timings.first_error})"
    if shown["count"] == 1:
        return f"{shown['max']:.1f} ms"
    extra = f", {shown['errors']} errors" if shown["errors"] else ""
    return f"p50 {shown['p50']:.1f} ms, p95 {shown['p95']:.1f} ms{extra}"


# --- the report ---------------------------------------------------------------------------------

COLUMNS = "{:<16} {:>8}  {:>8} {:>8} {:>8} {:>7}  {:>8} {:>8} {:>8} {:>7}"


def _cells(timings: Timings) -> list[str]:
    shown = timings.figures()
    if "p95" not in shown:
        return ["-", "-", "-", str(shown["errors"])]
    return [
        f"{shown['p50']:.1f}",
        f"{shown['p95']:.1f}",
        f"{shown['max']:.1f}",
        str(shown["errors"]),
    ]


def _overall(measured: list[Measured], attribute: str) -> float | None:
    seconds = sorted(s for m in measured for s in getattr(m, attribute).seconds)
    return percentile(seconds, 0.95) * 1000 if seconds else None


def _missed(pages: list[str]) -> str:
    return f" (missed by: {', '.join(pages)})" if pages else ""


def verdict(held: bool) -> str:
    return "MET" if held else "NOT MET"


def render_report(
    measured: list[Measured], seeded: Seeded, args: argparse.Namespace
) -> tuple[list[str], bool]:
    counts = seeded.counts
    lines = [
        "",
        f"seeded in {seeded.seconds:.0f} s: {counts['conversations']} conversations, "
        f"{counts['messages']} messages, {counts['media']} media, {counts['token_usage']} "
        f"token usage rows, {counts['credit_ledger']} ledger entries, {counts['events']} "
        f"events, {counts['tenants']} tenants",
        f"thread: the busiest conversation ({seeded.busy_messages} messages), thread closed: "
        f"one whose window closed ({seeded.closed_messages} messages); search name "
        f"'{seeded.name_query}' ({seeded.name_matches} contacts), word '{SEARCH_WORD}' "
        f"({seeded.word_matches} messages), number {seeded.number_query}",
        "",
        COLUMNS.format(
            "page",
            "first ms",
            "p50 ms",
            "p95 ms",
            "max ms",
            "errors",
            f"x{args.concurrency} p50",
            "p95",
            "max",
            "errors",
        ),
    ]
    for m in measured:
        first = m.first.figures()
        shown = f"{first['max']:.1f}" if first["count"] else next(iter(m.first.errors), "-")
        lines.append(
            COLUMNS.format(m.page.name, shown, *_cells(m.sequential), *_cells(m.concurrent))
        )
    problems = [
        f"{m.page.name}: {timings.first_error} ({pass_name})"
        for m in measured
        for pass_name, timings in (("sequential", m.sequential), ("concurrent", m.concurrent))
        if timings.errors
    ]
    lines += [f"ERROR {p}" for p in problems]
    overall_seq, overall_conc = _overall(measured, "sequential"), _overall(measured, "concurrent")
    lines.append(
        f"overall p95: {'-' if overall_seq is None else f'{overall_seq:.1f}'} ms one at a time, "
        f"{'-' if overall_conc is None else f'{overall_conc:.1f}'} ms with {args.concurrency} "
        f"in flight ({args.requests} requests per page each, after {WARMUP} unmeasured)"
    )
    missed_seq = [m.page.name for m in measured if not m.sequential.held()]
    missed_conc = [m.page.name for m in measured if not m.concurrent.held()]
    held_seq, held_conc = bool(measured) and not missed_seq, bool(measured) and not missed_conc
    target = f"target p95 < {TARGET_P95_MS:g} ms for every page"
    lines += [
        "",
        f"{target}, one at a time: {verdict(held_seq)}{_missed(missed_seq)}",
        f"{target}, {args.concurrency} in flight: {verdict(held_conc)}{_missed(missed_conc)}",
    ]
    summary = {
        "bench": "console",
        "conversations": args.conversations,
        "messages": args.messages,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "seeded": counts,
        "seed_seconds": round(seeded.seconds, 1),
        "busy_messages": seeded.busy_messages,
        "closed_messages": seeded.closed_messages,
        "word_matches": seeded.word_matches,
        "pages": {
            m.page.name: {
                "path": m.page.path,
                "first": m.first.figures(),
                "sequential": m.sequential.figures(),
                "concurrent": m.concurrent.figures(),
            }
            for m in measured
        },
        "overall_p95_ms": {
            "sequential": None if overall_seq is None else round(overall_seq, 2),
            "concurrent": None if overall_conc is None else round(overall_conc, 2),
        },
        "errors": problems,
        "target_met": held_seq and held_conc,
    }
    return [*lines, json.dumps(summary)], held_seq and held_conc


# --- the run ------------------------------------------------------------------------------------


async def _run(args: argparse.Namespace, stack: contextlib.AsyncExitStack, workdir: Path) -> Report:
    progress("console", "starting embedded PostgreSQL and migrations")
    database_url = await stack.enter_async_context(embedded_database(workdir))
    port = free_port()
    env = {**wa_cloud_env(database_url, secrets.token_hex(16)), "WA_DATA_DIR": str(workdir)}
    progress("console", "starting wa-cloud serve --no-worker")
    await stack.enter_async_context(
        local_server(serve_launch("serve", env, port, in_process_worker=False), workdir)
    )
    base_url = f"http://{HOST}:{port}"
    async with httpx.AsyncClient(base_url=base_url, timeout=HTTP_TIMEOUT) as api:
        tenant = await create_tenant(api, env["WA_ADMIN_TOKEN"], "Bench Shop")
    progress("console", f"seeding {args.conversations} conversations, {args.messages} messages")
    conn = await connect(database_url)
    try:
        seeded = await seed(conn, UUID(tenant.id), args)
    finally:
        await conn.close()
    progress("console", f"seeded in {seeded.seconds:.1f} s; timing {len(pages(seeded))} pages")
    keys: dict[Who, str] = {"business": tenant.api_key, "operator": env["WA_ADMIN_TOKEN"]}
    measured = await measure(base_url, keys, seeded, args.requests, args.concurrency)
    lines, held = render_report(measured, seeded, args)
    return Report(lines, 0 if held else 1)


def _check_args(args: argparse.Namespace) -> str | None:
    if not 1 <= args.conversations <= MAX_CONVERSATIONS:
        return f"--conversations must be 1 to {MAX_CONVERSATIONS}"
    if not 1 <= args.messages <= MAX_MESSAGES:
        return f"--messages must be 1 to {MAX_MESSAGES}"
    if not 1 <= args.requests <= MAX_REQUESTS:
        return f"--requests must be 1 to {MAX_REQUESTS}"
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        return f"--concurrency must be 1 to {MAX_CONCURRENCY}"
    return None


async def run_console_bench(args: argparse.Namespace) -> int:
    problem = _check_args(args)
    if problem:
        say("console", problem)
        return 2
    say(
        "console",
        f"{args.conversations} conversations, {args.messages} messages; {args.requests} "
        f"requests per page one at a time, then {args.concurrency} in flight; "
        "wa-cloud serve --no-worker",
    )
    started = time.monotonic()
    code = await run_bench("console", functools.partial(_run, args))
    say("console", f"took {time.monotonic() - started:.0f} s")
    return code
