-- Accounts: open one, freeze, unfreeze or close it, and the shape every account is returned in.
--
-- Entry points (the functions the service layer calls; here ledger_open_account and
-- ledger_set_account_status) are SECURITY DEFINER functions owned by emoney_ledger, the only role that
-- writes balances, transfers, entries, holds and the audit chain (0012). They pin search_path, pg_temp
-- last. The application role keeps SELECT (under row-level security) and EXECUTE on the entry points, so
-- every write goes through the checks in them: double entry, no overdraft, idempotency, the audit chain.
-- emoney_ledger has no cross-tenant read policy, so inside them row-level security is exactly the
-- application's: the tenant in app.tenant_id.
--
-- Every audited change takes its audit stripe before any account lock (the locking order: 08_balances.sql).

-- An account with its ledger balance: the row plus its shards.
create or replace function ledger_account_result(wanted_account_id uuid)
    returns setof ledger_account_view
    language sql stable
as $$
    select a.account_id, a.owner_user_id, a.kind, a.currency, a.status, a.overdraft_limit_minor,
           (a.balance_minor + coalesce((select sum(s.balance_minor) from account_balance_shards s
                                         where s.tenant_id = a.tenant_id and s.account_id = a.account_id), 0))::bigint,
           a.held_minor, a.balance_shards, a.created_at, a.updated_at
      from accounts a
     where a.tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid and a.account_id = wanted_account_id
$$;

-- Open a customer or merchant account, or the tenant's float for a currency (then: returns the
-- existing float if there is one, changing nothing).
create or replace function ledger_open_account(
    new_owner_user_id uuid, new_kind text, new_currency text, new_overdraft_limit_minor bigint,
    new_balance_shards smallint, actor text, method text, request_id text
) returns setof ledger_account_view
    language plpgsql
    security definer
    set search_path = pg_catalog, public, pg_temp
as $$
#variable_conflict use_column
declare
    audit_event record;
    tenant uuid := ledger_current_tenant();
    existing_float uuid;
    opened accounts;
begin
    if new_kind = 'system_float' then
        -- Every top-up and withdrawal asks for the float: find it without attempting an insert.
        select a.account_id into existing_float from accounts a
         where a.tenant_id = tenant and a.kind = 'system_float' and a.currency = new_currency;
        if found then
            return query select * from ledger_account_result(existing_float);
            return;
        end if;
    end if;
    perform audit_acquire_stripe();  -- held until commit: taken before any account lock
    if new_kind = 'system_float' then
        insert into accounts (tenant_id, owner_user_id, kind, currency, balance_shards)
        values (tenant, null, 'system_float', new_currency, new_balance_shards)
            on conflict (tenant_id, currency) where kind = 'system_float' do nothing
        returning * into opened;
        if not found then
            return query select * from ledger_account_result(
                (select a.account_id from accounts a
                  where a.tenant_id = tenant and a.kind = 'system_float' and a.currency = new_currency));
            return;
        end if;
    else
        if new_owner_user_id is null
           or not exists (select 1 from users u where u.tenant_id = tenant and u.user_id = new_owner_user_id) then
            perform ledger_fail('OWNER_NOT_FOUND', jsonb_build_object('userId', new_owner_user_id));
        end if;
        insert into accounts (tenant_id, owner_user_id, kind, currency, overdraft_limit_minor, balance_shards)
        values (tenant, new_owner_user_id, new_kind, new_currency, new_overdraft_limit_minor, new_balance_shards)
        returning * into opened;
    end if;
    insert into account_balance_shards (tenant_id, account_id, shard)
    select tenant, opened.account_id, s::smallint from generate_series(0, opened.balance_shards - 1) s;
    audit_event := audit_append(actor, method, request_id, jsonb_build_object('before', null, 'after', jsonb_build_object(
        'accountId', opened.account_id, 'ownerUserId', opened.owner_user_id, 'kind', opened.kind,
        'currency', opened.currency, 'status', opened.status,
        'overdraftLimitMinor', opened.overdraft_limit_minor::text)));
    return query select * from ledger_account_result(opened.account_id);
end
$$;

-- Freeze, unfreeze, close. Closed is final; closing needs a zero balance and nothing held.
-- Every shard is locked first, so credits in flight finish before and later ones see the status.
create or replace function ledger_set_account_status(
    changed_account_id uuid, new_status text, actor text, method text, request_id text
) returns setof ledger_account_view
    language plpgsql
    security definer
    set search_path = pg_catalog, public, pg_temp
as $$
#variable_conflict use_column
declare
    audit_event record;
    tenant uuid := ledger_current_tenant();
    account accounts;
begin
    if new_status is null or new_status not in ('active', 'frozen', 'closed') then
        raise exception using errcode = '22023', message = 'unknown account status';
    end if;
    perform audit_acquire_stripe();  -- held until commit: taken before any account lock
    account := ledger_lock_account(tenant, changed_account_id);
    if account.status = 'closed' then
        perform ledger_fail('ACCOUNT_CLOSED', jsonb_build_object('accountId', changed_account_id));
    end if;
    if account.status <> new_status then
        if account.balance_shards > 0 then
            perform ledger_sweep_shards(tenant, changed_account_id, true);
        end if;
        if new_status = 'closed' then
            if account.kind = 'system_float' then
                perform ledger_fail('ACCOUNT_KIND_NOT_ALLOWED', jsonb_build_object('accountId', changed_account_id));
            end if;
            if account.held_minor > 0 then
                perform ledger_expire_holds(changed_account_id, 1000);
            end if;
            select * into account from accounts a where a.tenant_id = tenant and a.account_id = changed_account_id;
            if account.balance_minor <> 0 or account.held_minor <> 0 then
                perform ledger_fail('ACCOUNT_NOT_EMPTY', jsonb_build_object(
                    'accountId', changed_account_id, 'balanceMinor', account.balance_minor::text,
                    'heldMinor', account.held_minor::text));
            end if;
        end if;
        update accounts a set status = new_status, updated_at = now()
         where a.tenant_id = tenant and a.account_id = changed_account_id;
        audit_event := audit_append(actor, method, request_id, jsonb_build_object(
            'before', jsonb_build_object('accountId', changed_account_id, 'status', account.status),
            'after', jsonb_build_object('accountId', changed_account_id, 'status', new_status)));
    end if;
    return query select * from ledger_account_result(changed_account_id);
end
$$;

-- Entry points owned by emoney_ledger. ALTER ... OWNER needs the new owner to hold CREATE on the schema at
-- that moment; it keeps none afterwards. Nothing changes when it owns them already.
grant create on schema public to emoney_ledger;
alter function ledger_open_account(uuid, text, text, bigint, smallint, text, text, text) owner to emoney_ledger;
alter function ledger_set_account_status(uuid, text, text, text, text) owner to emoney_ledger;
revoke create on schema public from emoney_ledger;

grant execute on function ledger_account_result(uuid) to emoney_app, emoney_ledger;
grant execute on function
    ledger_open_account(uuid, text, text, bigint, smallint, text, text, text),
    ledger_set_account_status(uuid, text, text, text, text)
to emoney_app;
