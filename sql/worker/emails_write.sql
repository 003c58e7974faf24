-- What became of leased alert emails: sent, retry (due again after wait seconds), failed (the
-- relay refused it for good, or no attempt is left) or not_sent (no relay), with the error.
UPDATE callback.alert_emails e
SET state = CASE WHEN r.verdict = 'retry' THEN 'pending' ELSE r.verdict END,
    due_at = CASE WHEN r.verdict = 'retry' THEN now() + make_interval(secs => r.wait) ELSE e.due_at END,
    leased_until = NULL,
    leased_by = NULL,
    sent_at = CASE WHEN r.verdict = 'sent' THEN now() END,
    last_error = r.error
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::float8[]) AS r(account_id, id, error, verdict, wait)
WHERE e.account_id = r.account_id AND e.id = r.id
