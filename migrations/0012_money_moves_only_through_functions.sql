-- 0012: money moves only through the ledger's functions.
--
-- Until now the ledger functions were SECURITY INVOKER, so the application role held INSERT/UPDATE on
-- balances, entries, transfers, holds and the audit chain: a bug (or an attacker) in the server could
-- `update accounts set balance_minor = ...` and break double entry; only reconciliation would notice.
-- Now the tables' money columns are written by `emoney_ledger` alone, a NOLOGIN role that owns the entry
-- points below as SECURITY DEFINER. The application keeps SELECT (under RLS) and EXECUTE on the entry
-- points, so every write goes through the checks in the functions: double entry, no overdraft,
-- idempotency, the audit chain.
--
-- Why a role of its own rather than the schema owner: the owner has cross-tenant read policies
-- (holds_owner_read, terminals_owner_read, ...) for its directory lookups. `emoney_ledger` has none, so
-- row-level security inside the functions is exactly the application's: the tenant in app.tenant_id.
do $$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'emoney_ledger') then
        create role emoney_ledger nologin nosuperuser nocreatedb nocreaterole noinherit nobypassrls;
    end if;
end
$$;

-- The migrating owner hands functions to emoney_ledger (ALTER ... OWNER needs membership) and may
-- still replace them in later migrations.
grant emoney_ledger to current_user;
grant usage on schema public to emoney_ledger;

-- emoney_ledger may do what the application could do so far on the ledger's tables, read the directory
-- tables (tenants, users, terminals; never write them) and EXECUTE the functions the application could
-- — copied from the catalog, so nothing the functions need is forgotten — but nothing the ledger never
-- needs: no refresh tokens, no issuing of payment codes, none of the owner's cross-tenant lookups (the
-- SECURITY DEFINER functions existing so far).
do $$
declare
    grant_row record;
begin
    for grant_row in
        select table_name, privilege_type from information_schema.role_table_grants
         where grantee = 'emoney_app' and table_schema = 'public'
           and table_name <> 'refresh_tokens'
           and (privilege_type = 'SELECT' or table_name not in ('tenants', 'users', 'terminals'))
           and (table_name, privilege_type) <> ('payment_codes', 'INSERT')
    loop
        execute format('grant %s on table %I to emoney_ledger', grant_row.privilege_type, grant_row.table_name);
    end loop;
    for grant_row in
        select table_name, column_name, privilege_type from information_schema.column_privileges
         where grantee = 'emoney_app' and table_schema = 'public'
           and table_name <> 'refresh_tokens'
           and (privilege_type = 'SELECT' or table_name not in ('tenants', 'users', 'terminals'))
           and (table_name, privilege_type) <> ('payment_codes', 'INSERT')
    loop
        execute format('grant %s (%I) on table %I to emoney_ledger', grant_row.privilege_type, grant_row.column_name,
                       grant_row.table_name);
    end loop;
    for grant_row in
        select p.oid::regprocedure as function_name from pg_catalog.pg_proc p
         where p.pronamespace = 'public'::regnamespace and has_function_privilege('emoney_app', p.oid, 'execute')
           and not p.prosecdef
    loop
        execute format('grant execute on function %s to emoney_ledger', grant_row.function_name);
    end loop;
end
$$;

-- The entry points the server calls.
-- A new owner needs CREATE on the schema at the moment of ALTER ... OWNER; it keeps none afterwards.
grant create on schema public to emoney_ledger;
do $$
declare
    entry_point regprocedure;
begin
    foreach entry_point in array array[
        'ledger_open_account(uuid,text,text,bigint,smallint,text,text,text)',
        'ledger_set_account_status(uuid,text,text,text,text)',
        'ledger_post_transfer(text,uuid,uuid,bigint,text,uuid,text,text,text,bytea)',
        'ledger_refund(uuid,bigint,text,text,text,bytea)',
        'ledger_authorize_hold(uuid,uuid,uuid,bigint,text,timestamptz,text,text,text,bytea)',
        'ledger_capture_hold(uuid,bigint,text,text,text,bytea)',
        'ledger_void_hold(uuid,text,text,text,bytea)',
        'ledger_expire_due_holds(integer)',
        'ledger_claim_request(text,text,text,bytea,uuid)',
        'audit_append(text,text,text,jsonb)',
        'payments_create_transfer_in(uuid,uuid,boolean,uuid,uuid,bigint,text,text,text,text,bytea)',
        'payments_charge_code_in(uuid,bytea,uuid,bigint,text,text,text,text,bytea)',
        'payments_authorize_code_in(uuid,bytea,uuid,bigint,text,timestamptz,text,text,text,bytea)'
    ]::regprocedure[]
    loop
        execute format('alter function %s owner to emoney_ledger', entry_point);
        execute format('alter function %s security definer', entry_point);
    end loop;
end
$$;

revoke create on schema public from emoney_ledger;

-- Every SECURITY DEFINER function (these, and the owner's directory lookups of 0002-0006) searches
-- pg_temp last. Unnamed, PostgreSQL searches the caller's temporary tables FIRST: the ledger functions
-- name tables unqualified, so a caller's temporary `account_balance_shards` (or `ledger_entries`,
-- `audit_events`) would have been used in place of the real one — with emoney_ledger's rights on the real
-- balances. And nobody but the database owner may create temporary tables at all.
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

-- The inner steps are no longer the application's to call: only through an entry point, which checks
-- the caller and writes the whole movement.
revoke execute on function
    ledger_lock_account(uuid, uuid),
    ledger_sweep_shards(uuid, uuid, boolean),
    ledger_try_change_row(uuid, uuid, bigint, bigint),
    ledger_change_row_slowly(uuid, uuid, bigint, bigint),
    ledger_change_shard(uuid, uuid, smallint, bigint),
    ledger_apply_leg(uuid, accounts, bigint, bigint),
    ledger_write_transfer(uuid, uuid, text, accounts, accounts, bigint, text, text, uuid, uuid, uuid, bigint),
    ledger_lock_authorized_hold(uuid, uuid),
    ledger_expire_holds(uuid, integer),
    ledger_usable_account(uuid, uuid, text),
    audit_acquire_stripe(),
    payments_create_transfer(uuid, boolean, uuid, uuid, bigint, text, text, text, text, bytea),
    payments_redeemable_code(bytea, uuid, text, text, text, bigint),
    payments_code_redeemed(bytea, text, text, uuid, uuid, text, uuid, uuid, uuid),
    payments_charge_code(bytea, uuid, bigint, text, text, text, text, bytea),
    payments_authorize_code(bytea, uuid, bigint, text, timestamptz, text, text, text, bytea)
from emoney_app;

-- No direct writes to money or to the audit chain. Kept: SELECT everywhere (under RLS); storing a
-- claimed key's reply (idempotency_keys.response, write-once by trigger); issuing payment codes;
-- the receipt outbox (no money in it).
revoke insert, update on accounts, account_balance_shards, holds, transfers, ledger_entries, audit_chain_heads,
    audit_events from emoney_app;
revoke insert on idempotency_keys from emoney_app;
revoke update on payment_codes from emoney_app;
-- Column grants are separate from table grants: revoke the column UPDATEs 0004/0005 gave.
revoke update (status, balance_minor, held_minor, updated_at) on accounts from emoney_app;
revoke update (balance_minor) on account_balance_shards from emoney_app;
revoke update (status, captured_minor, resolved_at) on holds from emoney_app;
revoke update (refunded_minor, status) on transfers from emoney_app;
revoke update (last_sequence, last_hash, previous_hash) on audit_chain_heads from emoney_app;
revoke update (used_at, used_by, used_request_id, used_for) on payment_codes from emoney_app;
