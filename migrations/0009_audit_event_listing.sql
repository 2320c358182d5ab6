-- 0009: indexes for ListAuditEvents, which pages through a tenant's audit log newest first on the
-- keyset (created_at, stripe, sequence), optionally only one actor's or one request id's events.
--
-- The time index carries the whole keyset, so a page is one backward index range scan with no sort
-- and no ties to break in memory; it replaces 0004's (tenant_id, created_at), a prefix of it, so an
-- audited change still writes one time index entry. The actor and request id filters get their own
-- (an actor's page is a range scan of that actor's events; a request id names one or a few events):
-- without them a rare actor or request id would walk the tenant's whole log to fill a page.
create index audit_events_by_time_keyset on audit_events (tenant_id, created_at, stripe, sequence);
drop index audit_events_by_time;
create index audit_events_by_actor on audit_events (tenant_id, actor, created_at, stripe, sequence);
create index audit_events_by_request_id on audit_events (tenant_id, request_id);
