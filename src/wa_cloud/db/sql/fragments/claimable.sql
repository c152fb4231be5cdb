-- Whether the queued outbox row {arg} may be claimed: a conversation's always; a campaign's
-- only while its campaign sends (one put back after a pause withdrew the rest, a retry or a
-- late slot, waits). Every query that finds due rows asks this, or a number whose only due
-- rows are a paused campaign's would be picked again and again with nothing to claim.
-- And never before a conversation message queued earlier for the same recipient that went
-- back to the queue (Meta asked to retry it, it was held back behind one, or it was late for
-- its slot: its run_after moved past its created_at) and has not gone yet: a recipient's
-- messages reach Meta in the order they were queued, across claims too.
({arg}.priority = 0 OR EXISTS (SELECT 1 FROM broadcasts b
                                 WHERE b.id = {arg}.broadcast_id
                                   AND b.status IN ('running', 'done')))
AND NOT EXISTS (SELECT 1 FROM messages e
                 WHERE e.phone_number_id = {arg}.phone_number_id
                   AND e.recipient = {arg}.recipient
                   AND e.direction = 'out' AND e.priority = 0
                   AND e.status IN ('queued', 'sending') AND e.run_after > e.created_at
                   AND (e.created_at < {arg}.created_at
                        OR (e.created_at = {arg}.created_at AND e.seq < {arg}.seq)))
