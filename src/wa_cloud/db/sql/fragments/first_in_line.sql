-- Whether campaign {arg} is its number's turn: a number sends one campaign at a time, its
-- oldest due one; one the messaging limit holds does not hold the line.
NOT EXISTS (SELECT 1 FROM broadcasts o
             WHERE o.phone_number_id = {arg}.phone_number_id
               AND o.status IN ('scheduled', 'running') AND o.run_at <= now()
               AND o.held_reason IS NULL AND (o.created_at, o.id) < ({arg}.created_at, {arg}.id))
