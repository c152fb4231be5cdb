-- A number's files library (api/files.py) and what the assistant's `send_file` reads of it
-- (ai/files.py). Every statement names the tenant: a file id of another tenant is no file.

-- name: lock_file_number
-- The tenant's current number, locked while a file is added: the count and bytes checked
-- below stay true until the insert commits (two uploads at once cannot both pass the limit).
SELECT n.phone_number_id
  FROM numbers n
 WHERE n.phone_number_id = $1 AND n.tenant_id = $2 AND n.removed_at IS NULL
   FOR UPDATE;

-- name: file_number_exists
SELECT 1 FROM numbers WHERE phone_number_id = $1 AND tenant_id = $2 AND removed_at IS NULL;

-- name: library_usage
-- How many files the number has, their bytes, and their titles (api/files.py compares them
-- by Python's casefold, as send_file matches them: lower() leaves "Straße" and "STRASSE" two).
SELECT count(*) AS files, coalesce(sum(size), 0)::bigint AS bytes,
       coalesce(array_agg(title), '{}') AS titles
  FROM bot_files
 WHERE tenant_id = $2 AND phone_number_id = $1;

-- name: insert_file
INSERT INTO bot_files (tenant_id, phone_number_id, title, description, kind, mime_type,
                       filename, size, sha256, content)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING id, title, description, kind, mime_type, filename, size, sha256, created_at;

-- name: list_files
-- Without the bytes: what the API lists and what the model is told, oldest first. Only while
-- the number is the tenant's: the files of a number given up are no longer offered.
SELECT f.id, f.title, f.description, f.kind, f.mime_type, f.filename, f.size, f.sha256,
       f.created_at
  FROM bot_files f
  JOIN numbers n ON n.phone_number_id = f.phone_number_id AND n.tenant_id = f.tenant_id
                AND n.removed_at IS NULL
 WHERE f.phone_number_id = $1 AND f.tenant_id = $2
 ORDER BY f.created_at, f.id;

-- name: delete_file
DELETE FROM bot_files WHERE id = $1 AND phone_number_id = $2 AND tenant_id = $3;

-- name: file_to_send
-- A file for `send_file`: Meta's media id while younger than $4 seconds (no bytes read then),
-- else the bytes to upload again. Only while the number is the tenant's (removed meanwhile:
-- no file).
WITH f AS (
    SELECT b.*, b.media_id IS NOT NULL
                AND b.uploaded_at > now() - make_interval(secs => $4) AS fresh
      FROM bot_files b
      JOIN numbers n ON n.phone_number_id = b.phone_number_id AND n.tenant_id = b.tenant_id
                    AND n.removed_at IS NULL
     WHERE b.id = $1 AND b.phone_number_id = $2 AND b.tenant_id = $3
)
SELECT kind, mime_type, filename, sha256,
       CASE WHEN fresh THEN media_id END AS media_id,
       CASE WHEN fresh THEN NULL ELSE content END AS content
  FROM f;

-- name: keep_file_media_id
-- Only on the file uploaded (the same bytes): a file deleted meanwhile stays deleted.
UPDATE bot_files SET media_id = $4, uploaded_at = now()
 WHERE id = $1 AND tenant_id = $2 AND sha256 = $3;
