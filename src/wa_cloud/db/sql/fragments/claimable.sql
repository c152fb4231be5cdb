-- Whether the queued outbox row {arg} may be claimed: a conversation's always; a campaign's
-- only while its campaign sends (one put back after a pause withdrew the rest, a retry or a
-- late slot, waits). Every query that finds due rows asks this, or a number whose only due
-- rows are a paused campaign's would be picked again and again with nothing to claim.
({arg}.priority = 0 OR EXISTS (SELECT 1 FROM broadcasts b
                                 WHERE b.id = {arg}.broadcast_id
                                   AND b.status IN ('running', 'done')))
