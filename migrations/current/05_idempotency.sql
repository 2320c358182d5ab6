-- Idempotency keys: one row per (tenant, caller, request_id), written in the same transaction as the
-- change it guards. Every movement claims its key first (before any other lock), so a retry finds what
-- the original call produced, and a concurrent duplicate's INSERT waits on the first one's uncommitted
-- key, then finds the row (storage/idempotency.py describes the protocol).
--
-- Keys are kept for a retention period, not forever (0013): a background pass in each server
-- (server/background.py) forgets the keys older than EMONEY_IDEMPOTENCY_RETENTION_DAYS (never under a
-- day); a retry that arrives later than that is a new request. Except the keys of redeemed payment
-- codes: a used code lets its terminal retry with the same request_id and the movement underneath
-- replays through the key; forgotten, the retry would pay a second time.

-- Claim the key (first) or find what the original call produced. A claim also takes the transaction's
-- audit stripe (04_audit.sql), held until commit: every movement's locks in one order — key, stripe, then
-- what it changes (08_balances.sql) — so an entry point only says what comes after.
create or replace function ledger_claim_request(
    caller text, method text, request_id text, request_hash bytea, new_result_id uuid,
    out claimed boolean, out result_id uuid, out stored_response bytea
)
    language plpgsql
    security definer
    set search_path = pg_catalog, public, pg_temp
as $$
#variable_conflict use_variable
declare
    tenant uuid := ledger_current_tenant();
    existing idempotency_keys;
begin
    if request_hash is null or length(request_hash) <> 32 then
        raise exception using errcode = '22023', message = 'request_hash must be 32 bytes (sha256)';
    end if;
    insert into idempotency_keys (tenant_id, caller, request_id, method, request_hash, result_id)
    values (tenant, caller, request_id, method, request_hash, new_result_id)
        on conflict do nothing;
    if found then
        claimed := true;
        result_id := new_result_id;
        perform audit_acquire_stripe();
        return;
    end if;
    -- A duplicate: the original committed (we waited for it if it was running), so its row is visible.
    select * into strict existing from idempotency_keys k
     where k.tenant_id = tenant and k.caller = caller and k.request_id = request_id;
    if existing.request_hash <> request_hash or existing.method <> method then
        perform ledger_fail('REQUEST_ID_REUSED', jsonb_build_object('requestId', request_id));
    end if;
    claimed := false;
    result_id := existing.result_id;
    stored_response := existing.response;
end
$$;

-- Which tenants have keys past retention: read across tenants by the owner (policy
-- idempotency_keys_owner_read), as tenants_with_due_holds reads holds; the application role still sees
-- only its tenant's keys. In random order, so with more tenants than one pass takes, every tenant is
-- reached.
create or replace function tenants_with_old_requests(older_than interval, tenant_limit integer) returns setof uuid
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
-- may delete a key (the application role may not).
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

-- Entry points owned by emoney_ledger (0012, 0013). ALTER ... OWNER needs the new owner to hold CREATE on
-- the schema at that moment; it keeps none afterwards. Nothing changes when it owns them already.
grant create on schema public to emoney_ledger;
alter function ledger_claim_request(text, text, text, bytea, uuid) owner to emoney_ledger;
alter function ledger_forget_old_requests(interval, integer) owner to emoney_ledger;
revoke create on schema public from emoney_ledger;

revoke all on function tenants_with_old_requests(interval, integer) from public;
grant execute on function
    ledger_claim_request(text, text, text, bytea, uuid), tenants_with_old_requests(interval, integer),
    ledger_forget_old_requests(interval, integer)
to emoney_app;
