-- name: console_watch
-- Open console pages of these tenants (NULL: the operator, every tenant): the triggers notify
-- for them until $2 seconds from now (migration 0021). A tenant deleted meanwhile is skipped,
-- and so is one being deleted (its row locked): the others' watches never wait for it.
INSERT INTO console_watch (tenant_id, until)
SELECT t, now() + make_interval(secs => $2)
  FROM unnest($1::uuid[]) AS t
 WHERE t IS NULL OR EXISTS (SELECT 1 FROM tenants WHERE id = t FOR KEY SHARE SKIP LOCKED)
ON CONFLICT ((coalesce(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)))
DO UPDATE SET until = greatest(console_watch.until, EXCLUDED.until);
