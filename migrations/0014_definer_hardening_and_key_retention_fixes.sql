-- 0014: fixes from the review of 0012/0013.
--
-- 1. SECURITY DEFINER functions searched pg_temp first. PostgreSQL looks up unqualified table names in
--    the session's temporary schema before anything in search_path unless pg_temp is listed; the
--    ledger functions name tables unqualified, so a caller allowed to create temporary tables could
--    shadow `account_balance_shards` (or `ledger_entries`, `audit_events`) with its own and make the
--    functions, running as emoney_ledger, move real money on its data. Now every definer function
--    searches pg_temp last, and nobody but the database owner may create temporary tables.
do $$
declare
    definer regprocedure;
begin
    for definer in
        select p.oid::regprocedure from pg_catalog.pg_proc p
         where p.pronamespace = 'public'::regnamespace and p.prosecdef
    loop
        execute format('alter function %s set search_path = pg_catalog, public, pg_temp', definer);
    end loop;
    execute format('revoke temporary on database %I from public', current_database());
end
$$;

-- 2. A used payment code lets its terminal retry with the same request_id: the movement underneath
--    replays through the idempotency key. Once retention forgot that key, the retry would have made a
--    second payment. Keys whose result is a payment code's redemption are therefore never forgotten
--    (one per redeemed code, as long-lived as the code row itself).
create index payment_codes_used_for on payment_codes (tenant_id, used_for) where used_for is not null;

-- 3. BRIN summaries only widen: once forgotten keys' pages were reused, every range would match "old"
--    and each pass would scan the table. A btree on (tenant, age) serves both the tenant search and the
--    per-tenant delete.
drop index idempotency_keys_by_age;
create index idempotency_keys_by_tenant_age on idempotency_keys (tenant_id, created_at);

-- 4. Tenants in random order, so with more tenants than one pass takes, every tenant is reached.
create or replace function tenants_with_old_requests(older_than interval, tenant_limit integer) returns setof uuid
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
as $$
    select t.tenant_id
      from (select distinct k.tenant_id from public.idempotency_keys k where k.created_at < now() - older_than) t
     order by random()
     limit least(greatest(tenant_limit, 1), 1000)
$$;

-- 5. SKIP LOCKED: server processes forgetting at the same moment take different keys instead of
--    waiting on each other's; and (2) above.
create or replace function ledger_forget_old_requests(older_than interval, max_rows integer) returns integer
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

-- 6. 0012 copied every grant of the application to emoney_ledger; the ledger's functions need less.
--    No refresh tokens, no issuing of payment codes, none of the owner's cross-tenant lookups.
revoke select on refresh_tokens from emoney_ledger;
revoke insert on payment_codes from emoney_ledger;
revoke execute on function
    public_tenant_by_slug(text), terminal_by_client_id(text), tenant_by_slug_any_status(text), tenants_page(text, integer),
    suspended_tenant_ids(), tenants_with_due_holds(integer), tenants_with_pending_receipts(integer),
    tenants_with_old_requests(interval, integer)
from emoney_ledger;
