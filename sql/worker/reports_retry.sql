-- Campaign report ($1, $2) failed to upload with error $4: due again in $3 seconds.
UPDATE callback.campaign_reports r
SET due_at = now() + make_interval(secs => $3), leased_until = NULL, leased_by = NULL, last_error = $4
WHERE r.account_id = $1 AND r.campaign_id = $2
