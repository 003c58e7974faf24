-- Callbacks $1 failed for good: where their retry policy says so, disable their campaign's
-- callbacks and raise the alert (callback._disable_campaign_callbacks).
SELECT count(callback._disable_campaign_callbacks(c.campaign_id, c.id))
FROM callback.callbacks c
JOIN callback.retry_policies p ON p.name = c.retry_policy
WHERE c.id = ANY ($1)
  AND p.disable_campaign
  AND c.campaign_id IS NOT NULL
  AND c.target IN ('campaign_event', 'campaign', 'list')
