-- A tenant's end of life: revoking its status links, deleting it and everything it owns.

-- name: bump_link_generation
-- Every link signed under an older generation stops opening (the status page compares).
UPDATE tenants SET link_generation = link_generation + 1, updated_at = now()
 WHERE id = $1
RETURNING link_generation;

-- name: lock_tenant_for_delete
-- FOR UPDATE: a reactivation waits for the deletion, and so does any insert of a row that
-- references the tenant (it then fails: the tenant is gone), so nothing slips in meanwhile.
SELECT active FROM tenants WHERE id = $1 FOR UPDATE;

-- The deletes below run in this order in one transaction (admin.delete_tenant), children
-- before parents, each counting what it removed. The final DELETE of the tenant cascades to
-- anything else that references it.

-- name: delete_tenant_forwards
WITH d AS (DELETE FROM forwards WHERE tenant_id = $1 RETURNING 1) SELECT count(*) FROM d;

-- name: delete_tenant_webhook
WITH d AS (DELETE FROM tenant_webhooks WHERE tenant_id = $1 RETURNING 1) SELECT count(*) FROM d;

-- name: delete_tenant_media
WITH d AS (DELETE FROM media WHERE tenant_id = $1 RETURNING 1) SELECT count(*) FROM d;

-- name: delete_tenant_statuses
WITH d AS (DELETE FROM statuses WHERE tenant_id = $1 RETURNING 1) SELECT count(*) FROM d;

-- name: delete_tenant_messages
WITH d AS (DELETE FROM messages WHERE tenant_id = $1 RETURNING 1) SELECT count(*) FROM d;

-- name: delete_tenant_contacts
WITH d AS (DELETE FROM contacts WHERE tenant_id = $1 RETURNING 1) SELECT count(*) FROM d;

-- name: delete_tenant_events
WITH d AS (DELETE FROM events WHERE tenant_id = $1 RETURNING 1) SELECT count(*) FROM d;

-- name: delete_tenant_templates
-- Templates are cached per WABA: only those of WABAs no other tenant has a number in.
WITH d AS (
    DELETE FROM templates t
     WHERE t.waba_id IN (SELECT waba_id FROM numbers WHERE tenant_id = $1)
       AND NOT EXISTS (
           SELECT 1 FROM numbers o WHERE o.waba_id = t.waba_id AND o.tenant_id <> $1
       )
    RETURNING 1
)
SELECT count(*) FROM d;

-- name: delete_tenant_numbers
-- Their sealed tokens and PINs go with them; pacing rows follow by cascade.
WITH d AS (DELETE FROM numbers WHERE tenant_id = $1 RETURNING 1) SELECT count(*) FROM d;

-- name: delete_tenant_apps
WITH d AS (DELETE FROM apps WHERE tenant_id = $1 RETURNING 1) SELECT count(*) FROM d;

-- name: delete_tenant_api_keys
WITH d AS (DELETE FROM api_keys WHERE tenant_id = $1 RETURNING 1) SELECT count(*) FROM d;

-- name: delete_tenant_audit
WITH d AS (DELETE FROM audit_log WHERE tenant_id = $1 RETURNING 1) SELECT count(*) FROM d;

-- name: delete_tenant
DELETE FROM tenants WHERE id = $1;
