-- Console sessions signed out before their cookie expires (migration 0023).

-- name: sign_out_session
-- $1: the session's digest; kept until the cookie would have expired anyway ($3 seconds, its
-- lifetime and a margin for the web processes' clocks, which sign it). A tenant deleted
-- meanwhile has no sessions left to end: nothing is written for it.
INSERT INTO console_signouts (session_digest, tenant_id, expires_at)
SELECT $1, $2::uuid, now() + make_interval(secs => $3)
 WHERE $2::uuid IS NULL OR EXISTS (SELECT 1 FROM tenants WHERE id = $2::uuid)
ON CONFLICT (session_digest) DO NOTHING;

-- name: session_signed_out
SELECT EXISTS (SELECT 1 FROM console_signouts WHERE session_digest = $1);

-- name: delete_expired_signouts
-- A cookie past its expiry is refused by its signature alone: its row has nothing left to do.
WITH due AS (
    SELECT session_digest FROM console_signouts
     WHERE expires_at < now()
     ORDER BY expires_at
     LIMIT $1
     FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM console_signouts s USING due WHERE s.session_digest = due.session_digest
    RETURNING 1
)
SELECT count(*) FROM gone;
