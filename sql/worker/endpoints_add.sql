-- Endpoints $1 (distinct) known from now on (up, no failures yet) unless they are already;
-- in order, so that workers adding the same ones do not wait for each other in a cycle.
INSERT INTO callback.endpoints (endpoint) SELECT e FROM unnest($1::text[]) AS e ORDER BY e ON CONFLICT DO NOTHING
