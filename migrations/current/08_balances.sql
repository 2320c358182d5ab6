-- Balances: how one leg of a movement changes an account, and the rules every change keeps.
--
--   ledger balance  = what the entries say;            held = sum of the account's authorized holds;
--   available       = ledger balance - held;           no-overdraft rule: available >= -overdraft_limit
--   (the tenant's float, kind `system_float`, has no floor: it goes negative by the e-money issued).
--
-- Hot accounts (issue 6: a merchant or the float receiving from many payers at once)
--   A balance row locked until commit serialises every payer of a merchant. So an account may have N
--   balance shards (`accounts.balance_shards` = N > 0, rows in `account_balance_shards`):
--   * a credit to a sharded account adds to ONE shard — the first one no other transaction holds
--     (SKIP LOCKED, from a random start), so up to N payers of one merchant commit in parallel;
--   * a debit of a sharded account with a floor (a merchant refunding or cashing out) locks the
--     account row, sweeps the shards into `accounts.balance_minor` (first the shards nobody holds,
--     then, only if that was not enough, all of them in shard order), and checks the floor on the
--     account row, where the CHECK constraint applies;
--   * the float has no floor, so its debits (top-ups) go to a shard too: no floor to check.
--   So for every account:  cached ledger balance = accounts.balance_minor + sum(its shards)
--   (an unsharded account has no shard rows: accounts.balance_minor is its exact cached balance).
--   Credits to a sharded account never lock the account row: they lock their shard, then re-read the
--   status. Freezing and closing lock the account row and then every shard, so they wait for credits
--   in flight, and credits that come after see the new status.
--
-- Locking order (no deadlocks): idempotency key -> audit stripe -> hold / refunded payment ->
--   accounts by ascending account_id (for one account: its row, then its shards by shard number).
--   A credit to a sharded account takes one shard only. Row locks on accounts are FOR NO KEY UPDATE
--   (never FOR UPDATE), so foreign-key checks of concurrent inserts (FOR KEY SHARE) never wait on them.
--   The only lock taken out of this order is on a payer's own expired holds while its row is held,
--   and that one uses SKIP LOCKED, so it never waits.
--
-- Cost (issue 6: one round trip per movement, and as little work in it as possible)
--   * Internal helpers are called by assignment, not PERFORM (a PERFORM starts an executor per call),
--     and carry no SET clause: entry points pin search_path and helpers inherit it (a SET clause costs a
--     save/restore of the setting on every call and stops SQL functions being inlined).
--   * Single-column rules are domains, tables keep only small cross-column CHECKs (0004): PostgreSQL
--     re-plans every table CHECK on each INSERT/UPDATE, which was ~30% of a transfer.
--
-- Everything here is internal: called only from inside an entry point (so as emoney_ledger, under the
-- caller's tenant through row-level security), never by the application directly.

-- Read (without locking) an account a movement will use. Kind, currency and shard count never
-- change; the status is checked again under the lock that the movement itself takes.
create or replace function ledger_usable_account(tenant uuid, wanted_account_id uuid, wanted_currency text) returns accounts
    language plpgsql
as $$
declare
    account accounts;
begin
    select * into account from accounts a where a.tenant_id = tenant and a.account_id = wanted_account_id;
    if not found then
        perform ledger_fail('ACCOUNT_NOT_FOUND', jsonb_build_object('accountId', wanted_account_id));
    end if;
    if account.currency <> wanted_currency then
        perform ledger_fail('CURRENCY_MISMATCH', jsonb_build_object('accountId', wanted_account_id,
                                                                    'accountCurrency', account.currency));
    end if;
    if account.status <> 'active' then
        perform ledger_fail(ledger_status_failure(account.status), jsonb_build_object('accountId', wanted_account_id));
    end if;
    return account;
end
$$;

-- Lock an account's row (FOR NO KEY UPDATE) and return it.
create or replace function ledger_lock_account(tenant uuid, wanted_account_id uuid) returns accounts
    language plpgsql
as $$
declare
    account accounts;
begin
    select * into account from accounts a
     where a.tenant_id = tenant and a.account_id = wanted_account_id
       for no key update;
    if not found then
        perform ledger_fail('ACCOUNT_NOT_FOUND', jsonb_build_object('accountId', wanted_account_id));
    end if;
    return account;
end
$$;

-- Move a sharded account's shards into its row; the caller holds the row. With `wait`, every shard
-- is locked in shard order (waiting for credits in flight); without, only the shards nobody holds
-- are taken. Returns the amount moved.
create or replace function ledger_sweep_shards(tenant uuid, swept_account_id uuid, wait boolean) returns bigint
    language plpgsql
as $$
declare
    taken smallint[];
    moved bigint;
begin
    if wait then
        select array_agg(locked.shard), coalesce(sum(locked.balance_minor), 0) into taken, moved
          from (select s.shard, s.balance_minor from account_balance_shards s
                 where s.tenant_id = tenant and s.account_id = swept_account_id
                 order by s.shard for no key update) locked;
    else
        select array_agg(locked.shard), coalesce(sum(locked.balance_minor), 0) into taken, moved
          from (select s.shard, s.balance_minor from account_balance_shards s
                 where s.tenant_id = tenant and s.account_id = swept_account_id and s.balance_minor <> 0
                 order by s.shard for no key update skip locked) locked;
    end if;
    if moved <> 0 then
        update account_balance_shards s set balance_minor = 0
         where s.tenant_id = tenant and s.account_id = swept_account_id and s.shard = any (taken) and s.balance_minor <> 0;
        update accounts a set balance_minor = a.balance_minor + moved, updated_at = now()
         where a.tenant_id = tenant and a.account_id = swept_account_id;
    end if;
    return moved;
end
$$;

-- Change an account row if it is active and the change leaves the floor intact (or does not lower
-- the available balance). One statement; false when it did not apply.
create or replace function ledger_try_change_row(tenant uuid, changed_account_id uuid, balance_change bigint, held_change bigint)
    returns boolean
    language plpgsql
as $$
begin
    update accounts a
       set balance_minor = a.balance_minor + balance_change, held_minor = a.held_minor + held_change, updated_at = now()
     where a.tenant_id = tenant and a.account_id = changed_account_id and a.status = 'active'
       and (balance_change - held_change >= 0 or a.kind = 'system_float'
            or a.balance_minor + balance_change - (a.held_minor + held_change) >= -a.overdraft_limit_minor);
    return found;
end
$$;

-- The fast path did not apply: find out why. A status, or funds that can still be found (shards to
-- sweep, the payer's own expired holds to release), or INSUFFICIENT_FUNDS.
create or replace function ledger_change_row_slowly(tenant uuid, changed_account_id uuid, balance_change bigint, held_change bigint)
    returns void
    language plpgsql
as $$
declare
    account accounts := ledger_lock_account(tenant, changed_account_id);
begin
    if account.status <> 'active' then
        perform ledger_fail(ledger_status_failure(account.status), jsonb_build_object('accountId', changed_account_id));
    end if;
    if ledger_try_change_row(tenant, changed_account_id, balance_change, held_change) then
        return;
    end if;
    if account.balance_shards > 0 then
        perform ledger_sweep_shards(tenant, changed_account_id, false);
        if ledger_try_change_row(tenant, changed_account_id, balance_change, held_change) then
            return;
        end if;
        perform ledger_sweep_shards(tenant, changed_account_id, true);
        if ledger_try_change_row(tenant, changed_account_id, balance_change, held_change) then
            return;
        end if;
    end if;
    if account.held_minor > 0 and ledger_expire_holds(changed_account_id, 1000) > 0 then
        if ledger_try_change_row(tenant, changed_account_id, balance_change, held_change) then
            return;
        end if;
    end if;
    select * into account from accounts a where a.tenant_id = tenant and a.account_id = changed_account_id;
    perform ledger_fail('INSUFFICIENT_FUNDS', jsonb_build_object(
        'accountId', changed_account_id,
        'availableMinor', (account.balance_minor - account.held_minor)::text));
end
$$;

-- Add to one shard: the first one nobody holds, from a random start (or, all busy, wait for one).
-- The status is read after the shard lock: freezing and closing lock every shard first.
create or replace function ledger_change_shard(tenant uuid, changed_account_id uuid, shard_count smallint, balance_change bigint)
    returns smallint
    language plpgsql
as $$
declare
    start_shard integer := floor(random() * shard_count)::integer;
    changed_shard smallint;
    current_status text;
begin
    update account_balance_shards s set balance_minor = s.balance_minor + balance_change
     where s.tenant_id = tenant and s.account_id = changed_account_id
       and s.shard = (select f.shard from account_balance_shards f
                       where f.tenant_id = tenant and f.account_id = changed_account_id
                       order by (f.shard - start_shard + shard_count) % shard_count
                       limit 1 for no key update skip locked)
    returning s.shard into changed_shard;
    if not found then
        update account_balance_shards s set balance_minor = s.balance_minor + balance_change
         where s.tenant_id = tenant and s.account_id = changed_account_id and s.shard = start_shard
        returning s.shard into changed_shard;
    end if;
    select a.status into current_status from accounts a where a.tenant_id = tenant and a.account_id = changed_account_id;
    if current_status <> 'active' then
        perform ledger_fail(ledger_status_failure(current_status), jsonb_build_object('accountId', changed_account_id));
    end if;
    return changed_shard;
end
$$;

-- One leg of a movement. A sharded account takes credits (and, for the floorless float, debits) in a
-- shard; everything else goes through the account row, where the floor is checked. Returns the shard
-- that took the change, or null when the account row did.
create or replace function ledger_apply_leg(tenant uuid, account accounts, balance_change bigint, held_change bigint)
    returns smallint
    language plpgsql
as $$
begin
    if account.balance_shards > 0 and held_change = 0 and (balance_change > 0 or account.kind = 'system_float') then
        return ledger_change_shard(tenant, account.account_id, account.balance_shards, balance_change);
    end if;
    update accounts a
       set balance_minor = a.balance_minor + balance_change, held_minor = a.held_minor + held_change, updated_at = now()
     where a.tenant_id = tenant and a.account_id = account.account_id and a.status = 'active'
       and (balance_change - held_change >= 0 or a.kind = 'system_float'
            or a.balance_minor + balance_change - (a.held_minor + held_change) >= -a.overdraft_limit_minor);
    if not found then
        perform ledger_change_row_slowly(tenant, account.account_id, balance_change, held_change);
    end if;
    return null;
end
$$;

grant execute on function
    ledger_usable_account(uuid, uuid, text), ledger_lock_account(uuid, uuid), ledger_sweep_shards(uuid, uuid, boolean),
    ledger_try_change_row(uuid, uuid, bigint, bigint), ledger_change_row_slowly(uuid, uuid, bigint, bigint),
    ledger_change_shard(uuid, uuid, smallint, bigint), ledger_apply_leg(uuid, accounts, bigint, bigint)
to emoney_ledger;
