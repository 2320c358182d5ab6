-- 0013: idempotency keys are kept for a retention period, not forever.
--
-- Every money movement and every idempotent change stores its (caller, request_id) key; without an
-- end the table grows by one row per payment for ever. A key older than the retention period
-- (EMONEY_IDEMPOTENCY_RETENTION_DAYS, 30 by default, never under a day) is forgotten by a background
-- pass in each server (server/background.py): a retry that arrives later than that is a new request.
-- Transfers, entries, holds and the audit chain are never deleted.
--
-- Except one kind of key: a used payment code lets its terminal retry with the same request_id, and
-- the movement underneath replays through the key. Forgotten, the retry would pay a second time. The
-- keys of redeemed codes are kept (one per code, as long-lived as the code row itself).

-- Old keys found by tenant and age (a btree: BRIN summaries only widen, so once forgotten keys' pages
-- were reused every range would look old); a redeemed code found by what it paid for.
create index idempotency_keys_by_tenant_age on idempotency_keys (tenant_id, created_at);
create index payment_codes_used_for on payment_codes (tenant_id, used_for) where used_for is not null;

-- Which tenants have keys past retention: read across tenants by the owner, as tenants_with_due_holds
-- reads holds (0004); the application role still sees only its tenant's keys. In random order, so with
-- more tenants than one pass takes, every tenant is reached.
create policy idempotency_keys_owner_read on idempotency_keys for select to current_user using (true);

create function tenants_with_old_requests(older_than interval, tenant_limit integer) returns setof uuid
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
as $$
    select t.tenant_id
      from (select distinct k.tenant_id from public.idempotency_keys k where k.created_at < now() - older_than) t
     order by random()
     limit least(greatest(tenant_limit, 1), 1000)
$$;

-- Forget up to max_rows keys of the current tenant older than `older_than` (at least a day), none of a
-- redeemed payment code; returns how many. SKIP LOCKED: server processes forgetting at the same moment
-- take different keys instead of waiting on each other's. Owned by emoney_ledger, the only role that
-- may delete a key (0012: the application role may not).
create function ledger_forget_old_requests(older_than interval, max_rows integer) returns integer
    language plpgsql security definer
    set search_path = pg_catalog, public, pg_temp
as $$
declare
    tenant uuid := ledger_current_tenant();
    forgotten integer;
begin
    if older_than is null or older_than < interval '1 day' then
        raise exception using errcode = '22023', message = 'idempotency keys are kept at least a day';
    end if;
    delete from public.idempotency_keys k
     where (k.tenant_id, k.caller, k.request_id) in (
               select o.tenant_id, o.caller, o.request_id from public.idempotency_keys o
                where o.tenant_id = tenant and o.created_at < now() - older_than
                  and not exists (select from public.payment_codes c
                                   where c.tenant_id = o.tenant_id and c.used_for = o.result_id)
                limit least(greatest(max_rows, 1), 10000)
                  for update skip locked);
    get diagnostics forgotten = row_count;
    return forgotten;
end
$$;

grant delete on idempotency_keys to emoney_ledger;
grant create on schema public to emoney_ledger;
alter function ledger_forget_old_requests(interval, integer) owner to emoney_ledger;
revoke create on schema public from emoney_ledger;

grant execute on function tenants_with_old_requests(interval, integer), ledger_forget_old_requests(interval, integer)
    to emoney_app;
