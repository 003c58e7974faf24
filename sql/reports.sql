-- Campaign reports in object storage (seed 003: report_url, "URL to download the full campaign
-- report (CSV)"). With pg_callback.report_bucket set, a campaign's end queues its report here
-- instead of recording campaign.complete at once; a worker uploads the CSV
-- (callback._campaign_report_lines, streamed a part at a time: src/deliver/reports.rs), then
-- records campaign.complete with report_url, a presigned link valid for
-- pg_callback.report_link_ttl. Failed uploads are retried; only when one has failed for good
-- does campaign.complete go, with report_url null and report_error saying why.

CREATE TABLE callback.campaign_reports (
    account_id bigint NOT NULL,
    campaign_id bigint NOT NULL,
    state text NOT NULL DEFAULT 'pending' CONSTRAINT state_pending_uploaded_or_failed
        CHECK (state IN ('pending', 'uploaded', 'failed')),
    complete_data jsonb NOT NULL,
    attempts int NOT NULL DEFAULT 0,
    due_at timestamptz NOT NULL DEFAULT now(),
    leased_until timestamptz,
    leased_by int,
    object_key text,
    bytes bigint,
    uploaded_at timestamptz,
    last_error text,
    PRIMARY KEY (account_id, campaign_id)
);
CREATE INDEX campaign_reports_due ON callback.campaign_reports (due_at) WHERE state = 'pending';
COMMENT ON TABLE callback.campaign_reports IS 'Each ended campaign''s report on its way to object storage: pending (due_at, attempts, last_error), uploaded (object_key, bytes) or failed; complete_data is the campaign.complete event''s data, recorded with report_url once the upload is done. Written by the workers.';
COMMENT ON COLUMN callback.campaign_reports.complete_data IS 'The data of the campaign.complete event waiting for the report.';
SELECT pg_catalog.pg_extension_config_dump('callback.campaign_reports', '');

CREATE FUNCTION callback._queue_report(account_id bigint, campaign_id bigint, data jsonb) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO callback.campaign_reports AS r (account_id, campaign_id, complete_data)
    VALUES (account_id, campaign_id, data)
    ON CONFLICT (account_id, campaign_id) DO UPDATE
    SET state = 'pending', complete_data = EXCLUDED.complete_data, attempts = 0, due_at = now(),
        leased_until = NULL, leased_by = NULL, last_error = NULL;
    SELECT callback._wake_on_commit();
$$;

-- The worker's last word on a report: uploaded (url: its link) or failed for good (error);
-- records the campaign.complete event waiting for it, with report_url (and report_error).
CREATE FUNCTION callback._report_done(account_id bigint, campaign_id bigint, url text, error text,
                                      object_key text, bytes bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    report callback.campaign_reports;
    campaign callback.campaigns;
BEGIN
    UPDATE callback.campaign_reports r
    SET state = CASE WHEN url IS NULL THEN 'failed' ELSE 'uploaded' END,
        leased_until = NULL, leased_by = NULL, last_error = error, object_key = _report_done.object_key, bytes = _report_done.bytes,
        uploaded_at = CASE WHEN url IS NULL THEN NULL ELSE now() END
    WHERE r.account_id = _report_done.account_id AND r.campaign_id = _report_done.campaign_id AND r.state = 'pending'
    RETURNING * INTO report;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT * INTO campaign FROM callback.campaigns c WHERE c.id = _report_done.campaign_id;
    IF NOT FOUND THEN
        RETURN;  -- deleted since it ended: nothing to report to
    END IF;
    PERFORM callback._record('campaign.complete', campaign, NULL, report.account_id, NULL, callback._campaign_vars(campaign),
        report.complete_data || jsonb_build_object('report_url', url)
        || CASE WHEN error IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('report_error', error) END);
END $$;
