-- 0013: idempotency keys are kept for a retention period, not forever.
--
-- Every money movement and every idempotent change stores its (caller, request_id) key; without an
-- end the table grows by one row per payment for ever. A key older than the retention period
-- (EMONEY_IDEMPOTENCY_RETENTION_DAYS, 30 by default, never under a day) is forgotten by a background
-- pass in each server (server/background.py): a retry that arrives later than that is a new request.
-- Transfers, entries, holds and the audit chain are never deleted.

-- Old keys are found by age: a BRIN index costs next to nothing per insert (keys arrive in time order);
-- autosummarize keeps new block ranges summarised between vacuums, so the search stays narrow.
create index idempotency_keys_by_age on idempotency_keys using brin (created_at) with (autosummarize = on);

-- Which tenants have keys past retention: read across tenants by the owner, as tenants_with_due_holds
-- reads holds (0004); the application role still sees only its tenant's keys.
create policy idempotency_keys_owner_read on idempotency_keys for select to current_user using (true);

create function tenants_with_old_requests(older_than interval, tenant_limit integer) returns setof uuid
    language sql stable security definer
    set search_path = pg_catalog, public
as $$
    select distinct k.tenant_id from public.idempotency_keys k
     where k.created_at < now() - older_than
     limit least(greatest(tenant_limit, 1), 1000)
$$;

-- Forget up to max_rows keys of the current tenant older than `older_than` (at least a day); returns
-- how many. Owned by emoney_ledger, the only role that may delete a key (0012: the application role
-- may not).
create function ledger_forget_old_requests(older_than interval, max_rows integer) returns integer
    language plpgsql security definer
    set search_path = pg_catalog, public
as $$
declare
    tenant uuid := ledger_current_tenant();
    forgotten integer;
begin
    if older_than is null or older_than < interval '1 day' then
        raise exception using errcode = '22023', message = 'idempotency keys are kept at least a day';
    end if;
    delete from idempotency_keys k
     where (k.tenant_id, k.caller, k.request_id) in (
               select o.tenant_id, o.caller, o.request_id from idempotency_keys o
                where o.tenant_id = tenant and o.created_at < now() - older_than
                limit least(greatest(max_rows, 1), 10000));
    get diagnostics forgotten = row_count;
    return forgotten;
end
$$;

grant delete on idempotency_keys to emoney_ledger;
grant create on schema public to emoney_ledger;
alter function ledger_forget_old_requests(interval, integer) owner to emoney_ledger;
revoke create on schema public from emoney_ledger;

revoke all on function tenants_with_old_requests(interval, integer), ledger_forget_old_requests(interval, integer)
    from public;
grant execute on function tenants_with_old_requests(interval, integer), ledger_forget_old_requests(interval, integer)
    to emoney_app;
