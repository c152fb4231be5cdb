-- The tenants with pending rows in the table {arg}, one index probe each (a loose index scan
-- on its (tenant_id) index of pending rows), so a tenant's long backlog is never read row by
-- row. Written in a statement as
--   WITH RECURSIVE waiting (tenant_id) AS ({{pending_tenants:forwards}}) ...
-- (the last row of `waiting` is a NULL: callers join or filter it away).
(SELECT tenant_id FROM {arg} WHERE state = 'pending' ORDER BY tenant_id LIMIT 1)
UNION ALL
SELECT (SELECT p.tenant_id FROM {arg} p
         WHERE p.state = 'pending' AND p.tenant_id > w.tenant_id
         ORDER BY p.tenant_id LIMIT 1)
  FROM waiting w
 WHERE w.tenant_id IS NOT NULL
