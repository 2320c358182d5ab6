-- Receipts: every completed payment gets a receipt document in object storage.
--
-- The request is a row of the outbox `receipt_outbox`, inserted in the SAME transaction as the payment,
-- so a payment never waits for, or fails because of, object storage. A background worker in every server
-- process (storage/receipts.py) writes pending receipts later, a batch at a time as one bundle object
-- (0010), and sets `written_at`, retrying while object storage is down. Workers lock rows FOR UPDATE SKIP
-- LOCKED, so several processes share the work without writing one twice at once (and a receipt's bytes
-- are deterministic, so a repeated upload after a crash rewrites the same object).

-- Ask for the receipt of a payment (a transfer, or a hold), in the payment's own transaction. Idempotent:
-- a second request for the same payment changes nothing. The one place a receipt is requested: the
-- one-statement entry points call it, and so does the service layer (storage/receipts.py enqueue_receipt).
create or replace function receipts_request(tenant uuid, payment uuid) returns void
    language plpgsql
as $$
begin
    insert into receipt_outbox (tenant_id, payment_id) values (tenant, payment) on conflict do nothing;
end
$$;

-- Which tenants have receipts still to write (for the worker, before it knows a tenant). The owner reads
-- pending rows across tenants (policy receipt_outbox_owner_read); the application role has no such policy.
create or replace function tenants_with_pending_receipts(tenant_limit integer) returns setof uuid
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
as $$
    select distinct r.tenant_id from public.receipt_outbox r
     where r.written_at is null
     limit least(greatest(tenant_limit, 1), 1000)
$$;

revoke all on function tenants_with_pending_receipts(integer) from public;
grant execute on function tenants_with_pending_receipts(integer) to emoney_app;
grant execute on function receipts_request(uuid, uuid) to emoney_app, emoney_ledger;
