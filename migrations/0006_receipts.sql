-- 0006: the receipt outbox — every completed payment gets a receipt document in object storage.
--
-- The service layer inserts a row in the SAME transaction as the payment (so a payment never waits
-- for, or fails because of, object storage); a background worker in every server process uploads
-- pending receipts later and sets `written_at`, retrying while object storage is down. Workers lock
-- rows FOR UPDATE SKIP LOCKED, so several processes share the work without writing one twice at once
-- (and a receipt's bytes are deterministic, so a repeated upload after a crash rewrites the same object).
create table receipt_outbox (
    tenant_id       uuid        not null references tenants (tenant_id),
    payment_id      uuid        not null,  -- a transfer or hold (both are `payments/{id}`)
    created_at      timestamptz not null default now(),
    written_at      timestamptz,
    attempts        integer     not null default 0 check (attempts between 0 and 1000000000),
    last_error_kind text        check (length(last_error_kind) between 1 and 100),
    primary key (tenant_id, payment_id),
    check (written_at is null or written_at >= created_at)
);
create index receipt_outbox_pending on receipt_outbox (tenant_id, created_at, payment_id) where written_at is null;

alter table receipt_outbox enable row level security;
alter table receipt_outbox force row level security;
create policy receipt_outbox_isolation on receipt_outbox
    using (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
grant select, insert on receipt_outbox to emoney_app;
grant update (written_at, attempts, last_error_kind) on receipt_outbox to emoney_app;

-- The owner reads pending rows across tenants for the SECURITY DEFINER lookup below (as it reads
-- holds in 0004); the application role gets no such policy.
create policy receipt_outbox_owner_read on receipt_outbox for select to current_user using (true);

-- Which tenants have receipts still to write (for the worker, before it knows a tenant).
create function tenants_with_pending_receipts(tenant_limit integer) returns setof uuid
    language sql stable security definer
    set search_path = pg_catalog, public
as $$
    select distinct r.tenant_id from public.receipt_outbox r
     where r.written_at is null
     limit least(greatest(tenant_limit, 1), 1000)
$$;
revoke all on function tenants_with_pending_receipts(integer) from public;
grant execute on function tenants_with_pending_receipts(integer) to emoney_app;
