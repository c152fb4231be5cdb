-- name: insert_audit
INSERT INTO audit_log (tenant_id, actor, severity, action, detail)
VALUES ($1, $2, $3, $4, $5);

-- name: list_audit
-- Newest first; $1 limits to one tenant (NULL: all, for the operator), $4 to one severity.
SELECT id, created_at, tenant_id, actor, severity, action, detail FROM audit_log
 WHERE ($1::uuid IS NULL OR tenant_id = $1) AND ($2::bigint IS NULL OR id < $2)
   AND ($4::text IS NULL OR severity = $4)
 ORDER BY id DESC
 LIMIT $3;
