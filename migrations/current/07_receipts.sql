-- Receipts: every transfer gets a receipt document in object storage (a hold gets its receipt when it is
-- captured: the capture is a transfer).
--
-- Nothing is written for a receipt in the payment's own transaction, so a payment never waits for, or
-- fails because of, object storage, and costs no extra row. A transfer carries `created_xid`, the 64-bit
-- id of the transaction that wrote it (pg_current_xact_id(): never wraps), and each tenant has one
-- `receipt_cursors` row: every transfer of the tenant with created_xid >= next_xid still needs its receipt
-- (a tenant without a cursor row: every transfer). A background worker in every server process
-- (storage/receipts.py) archives them a batch at a time as one bundle object, then moves the cursor.
--
-- Why no receipt is ever skipped: transactions commit out of the order of their ids, so the writer never
-- reads past the horizon receipts_horizon() — the oldest transaction id still running: every transaction
-- below it has finished. It reads the horizon FIRST, then (in a later statement, so with a later snapshot)
-- the transfers in [next_xid, horizon): all of them committed and visible, and none can appear there
-- afterwards. A transfer rolled back (a refused item of a batch, in its subtransaction) is simply absent.
-- Writers of several processes take a tenant's turn with a transaction-level advisory lock, so one
-- tenant's batch is written by one writer at a time, and the lock gives the writer no transaction id of
-- its own that would hold every other tenant's horizon back while it uploads.

-- The oldest transaction id still running (or the next one to be given out, when none runs).
create or replace function receipts_horizon() returns bigint
    language sql volatile
    return pg_snapshot_xmin(pg_current_snapshot())::text::bigint;

-- The tenants with receipts to write (for the worker, before it knows a tenant). The owner reads every
-- tenant's transfers and cursor while no tenant is set (policies transfers_owner_read and
-- receipt_cursors_owner_read); the application role has no such policy. Per tenant, a LATERAL subquery with LIMIT 1 (which the planner never
-- turns into a semi-join that reads every transfer), through the BRIN index transfers_by_created_xid.
create or replace function tenants_with_pending_receipts(tenant_limit integer) returns setof uuid
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
as $$
    select t.tenant_id
      from public.tenants t
      left join public.receipt_cursors c on c.tenant_id = t.tenant_id
     cross join lateral (select from public.transfers p
                          where p.tenant_id = t.tenant_id and p.created_xid >= coalesce(c.next_xid, 0)
                          limit 1) due
     limit least(greatest(tenant_limit, 1), 1000)
$$;

-- The transfers whose receipt is not written yet, as far as the caller can see them: the current tenant's
-- for the application role (row-level security), every tenant's for a superuser (the fault injector's
-- check). With created_until, only those made until then.
create or replace function receipts_pending(created_until timestamptz default null)
    returns table (tenant_id uuid, transfer_id uuid, created_at timestamptz)
    language sql stable
    set search_path = pg_catalog, public, pg_temp
as $$
    select p.tenant_id, p.transfer_id, p.created_at
      from public.transfers p
      left join public.receipt_cursors c on c.tenant_id = p.tenant_id
     where p.created_xid >= coalesce(c.next_xid, 0)
       and (created_until is null or p.created_at <= created_until)
$$;

grant execute on function tenants_with_pending_receipts(integer) to emoney_app;
grant execute on function receipts_horizon() to emoney_app;
grant execute on function receipts_pending(timestamptz) to emoney_app;
