-- Payment codes: a terminal's ChargePaymentCode or AuthorizePayment in ONE statement.
--
-- A customer's app shows a one-time code (only its SHA-256 is stored, 0005); the terminal redeems it: lock
-- the code, check it, find the terminal's merchant account, move the money (or hold it), mark the code
-- used and announce the live event — all in the entry point's one transaction (the receipt is read from the
-- transfer row, 07_receipts.sql).
-- A code is used at most once; a retry by the same terminal with the same request_id finds the code used by
-- itself and replays (its idempotency key is never forgotten: 05_idempotency.sql).
--
-- The failures (storage/ledger.py maps them):
--   PAYMENT_CODE_NOT_FOUND   no such code in this tenant
--   PAYMENT_CODE_USED        already used, by another caller or another request_id
--   PAYMENT_CODE_EXPIRED     unused and past its expiry
--   CURRENCY_MISMATCH        the request's currency is not the code's
--   AMOUNT_EXCEEDS_CODE      above the code's maximum (detail: maxAmountMinor)
--   MERCHANT_ACCOUNT_MISSING the terminal's merchant has no active merchant account in that currency

-- Lock and check the code; the payer's and the merchant's accounts.
create or replace function payments_redeemable_code(
    code_hash bytea, terminal_id uuid, actor text, request_id text, currency text, amount_minor bigint,
    out payer_account_id uuid, out merchant_account_id uuid
)
    language plpgsql
    set search_path = pg_catalog, public
as $$
#variable_conflict use_variable
declare
    tenant uuid := ledger_current_tenant();
    code payment_codes;
begin
    select * into code from payment_codes c
     where c.tenant_id = tenant and c.code_hash = code_hash
       for update;
    if not found then
        perform ledger_fail('PAYMENT_CODE_NOT_FOUND');
    end if;
    if code.used_at is not null and not (code.used_by = actor and code.used_request_id = request_id) then
        perform ledger_fail('PAYMENT_CODE_USED');
    end if;
    if code.used_at is null and code.expires_at <= now() then
        perform ledger_fail('PAYMENT_CODE_EXPIRED');
    end if;
    if code.currency <> currency then
        perform ledger_fail('CURRENCY_MISMATCH', jsonb_build_object('codeCurrency', code.currency));
    end if;
    if amount_minor > code.max_amount_minor then
        perform ledger_fail('AMOUNT_EXCEEDS_CODE', jsonb_build_object('maxAmountMinor', code.max_amount_minor::text));
    end if;
    select a.account_id into merchant_account_id
      from terminals t
      join accounts a on a.tenant_id = t.tenant_id and a.owner_user_id = t.merchant_user_id
     where t.tenant_id = tenant and t.terminal_id = terminal_id
       and a.kind = 'merchant' and a.currency = currency and a.status = 'active'
     order by a.created_at, a.account_id
     limit 1;
    if merchant_account_id is null then
        perform ledger_fail('MERCHANT_ACCOUNT_MISSING', jsonb_build_object('currency', currency));
    end if;
    payer_account_id := code.account_id;
end
$$;

-- After the movement: mark the code used (first time only) and announce the event. (A payment's receipt
-- is read from its transfer row, 07_receipts.sql; a hold gets its receipt when captured.)
create or replace function payments_code_redeemed(
    code_hash bytea, actor text, request_id text, produced uuid, event text,
    terminal_id uuid, payer_account_id uuid, merchant_account_id uuid
) returns void
    language plpgsql
    set search_path = pg_catalog, public
as $$
#variable_conflict use_variable
declare
    tenant uuid := ledger_current_tenant();
begin
    update payment_codes c set used_at = now(), used_by = actor, used_request_id = request_id, used_for = produced
     where c.tenant_id = tenant and c.code_hash = code_hash and c.used_at is null;
    perform payments_notify(tenant, produced, event, terminal_id, array[payer_account_id, merchant_account_id]);
end
$$;

-- ChargePaymentCode: a payment of the code's account to the terminal's merchant.
create or replace function payments_charge_code(
    code_hash bytea, terminal_id uuid, amount_minor bigint, currency text,
    actor text, method text, request_id text, request_hash bytea
) returns setof ledger_transfer_outcome
    language plpgsql
    set search_path = pg_catalog, public
as $$
#variable_conflict use_variable
declare
    code record;
    outcome ledger_transfer_outcome;
begin
    code := payments_redeemable_code(code_hash, terminal_id, actor, request_id, currency, amount_minor);
    select * into outcome
      from ledger_post_transfer('payment', code.payer_account_id, code.merchant_account_id, amount_minor, currency,
                                terminal_id, actor, method, request_id, request_hash);
    outcome := ledger_transfer_as_created(outcome);
    if not outcome.replayed then
        perform payments_code_redeemed(code_hash, actor, request_id, outcome.transfer_id, 'created', terminal_id,
                                       code.payer_account_id, code.merchant_account_id);
    end if;
    return next outcome;
end
$$;

-- AuthorizePayment: a hold on the code's account for the terminal's merchant.
create or replace function payments_authorize_code(
    code_hash bytea, terminal_id uuid, amount_minor bigint, currency text, expires_at timestamptz,
    actor text, method text, request_id text, request_hash bytea
) returns setof ledger_hold_outcome
    language plpgsql
    set search_path = pg_catalog, public
as $$
#variable_conflict use_variable
declare
    code record;
    outcome ledger_hold_outcome;
begin
    code := payments_redeemable_code(code_hash, terminal_id, actor, request_id, currency, amount_minor);
    select * into outcome
      from ledger_authorize_hold(code.payer_account_id, code.merchant_account_id, terminal_id, amount_minor, currency,
                                 expires_at, actor, method, request_id, request_hash);
    if outcome.replayed then
        if outcome.stored_response is null then  -- as created: a later capture or void does not change the replay
            outcome.status := 'authorized';
            outcome.captured_minor := 0;
            outcome.resolved_at := null;
            outcome.capture_transfer_id := null;
        end if;
    else
        perform payments_code_redeemed(code_hash, actor, request_id, outcome.hold_id, 'created', terminal_id,
                                       code.payer_account_id, code.merchant_account_id);
    end if;
    return next outcome;
end
$$;

-- The entry points: they take the tenant as their first argument and set `app.tenant_id` themselves, so a
-- charge or an authorization is ONE statement on an autocommit connection — its own transaction, one round
-- trip, and the code's row lock never held while Python waits (10_movements.sql says more).
create or replace function payments_charge_code_in(
    tenant uuid, code_hash bytea, terminal_id uuid, amount_minor bigint, currency text,
    actor text, method text, request_id text, request_hash bytea
) returns setof ledger_transfer_outcome
    language plpgsql
    security definer
    set search_path = pg_catalog, public, pg_temp
as $$
begin
    perform set_config('app.tenant_id', tenant::text, true);
    return query select * from payments_charge_code(code_hash, terminal_id, amount_minor, currency,
        actor, method, request_id, request_hash);
end
$$;

create or replace function payments_authorize_code_in(
    tenant uuid, code_hash bytea, terminal_id uuid, amount_minor bigint, currency text, expires_at timestamptz,
    actor text, method text, request_id text, request_hash bytea
) returns setof ledger_hold_outcome
    language plpgsql
    security definer
    set search_path = pg_catalog, public, pg_temp
as $$
begin
    perform set_config('app.tenant_id', tenant::text, true);
    return query select * from payments_authorize_code(code_hash, terminal_id, amount_minor, currency, expires_at,
        actor, method, request_id, request_hash);
end
$$;

-- Group commit of ChargePaymentCode (issue 14; storage/group_commit.py gathers the concurrent charges of a
-- process): several charges of one tenant in ONE statement and ONE transaction. Each item keeps its own
-- outcome, exactly as payments_create_transfers_in does for CreateTransfer (10_movements.sql), by the same two
-- paths: every item in one subtransaction first; if any is refused (PAYMENT_CODE_USED, INSUFFICIENT_FUNDS,
-- ...), the batch again with each item in its own subtransaction, the refused one rolled back alone with
-- exactly the error it would have had on its own. (One subtransaction per item always would turn every code
-- and account the batch locked first into a MultiXact when an item updates it; 10_movements.sql says more.)
--
-- Locking order, the one a single charge follows (the code, then the accounts): before any item runs, the
-- batch locks its codes in ascending code_hash, then, in ascending account_id, every account row its items
-- will lock anyway — each code's payer and each unsharded active merchant account of the terminals'
-- merchants in the items' currencies (a sharded merchant is credited through one shard, never locked whole).
create or replace function payments_lock_charge_batch(tenant uuid, code_hashes bytea[], terminal_ids uuid[], currencies text[])
    returns void
    language plpgsql
as $$
declare
    locking uuid[];
begin
    perform 1
       from (select c.code_hash from payment_codes c
              where c.tenant_id = tenant and c.code_hash = any (code_hashes)
              order by c.code_hash
                for update) locked_codes;
    -- Which accounts, found through their indexes first (one OR over both would read every account).
    select array_agg(c.account_id) into locking
      from payment_codes c
     where c.tenant_id = tenant and c.code_hash = any (code_hashes);
    select coalesce(locking, '{}') || coalesce(array_agg(a.account_id), '{}') into locking
      from terminals t
      join accounts a on a.tenant_id = t.tenant_id and a.owner_user_id = t.merchant_user_id
     where t.tenant_id = tenant and t.terminal_id = any (terminal_ids)
       and a.kind = 'merchant' and a.status = 'active' and a.currency = any (currencies) and a.balance_shards = 0;
    perform 1
       from (select a.account_id from accounts a
              where a.tenant_id = tenant and a.account_id = any (locking)
              order by a.account_id
                for no key update) locked_accounts;
end
$$;

create or replace function payments_charge_codes_in(
    tenant uuid, code_hashes bytea[], terminal_ids uuid[], amounts_minor bigint[], currencies text[],
    actors text[], methods text[], request_ids text[], request_hashes bytea[]
) returns table (item integer, failed_sqlstate text, failed_message text, failed_detail text,
                 outcome ledger_transfer_outcome)
    language plpgsql
    security definer
    set search_path = pg_catalog, public, pg_temp
as $$
declare
    items integer := ledger_batch_items(array[
        cardinality(code_hashes), cardinality(terminal_ids), cardinality(amounts_minor), cardinality(currencies),
        cardinality(actors), cardinality(methods), cardinality(request_ids), cardinality(request_hashes)]);
    one ledger_transfer_outcome;
    outcomes ledger_transfer_outcome[] := '{}';
begin
    perform set_config('app.tenant_id', tenant::text, true);
    begin
        perform payments_lock_charge_batch(tenant, code_hashes, terminal_ids, currencies);
        for i in 1 .. items loop
            select * into strict one
              from payments_charge_code(code_hashes[i], terminal_ids[i], amounts_minor[i], currencies[i],
                                        actors[i], methods[i], request_ids[i], request_hashes[i]);
            outcomes := outcomes || one;
        end loop;
    exception when others then
        outcomes := null;  -- a charge was refused: everything above is rolled back; one by one below
    end;
    if outcomes is not null then
        return query select i, null::text, null::text, null::text, outcomes[i] from generate_series(1, items) i;
        return;
    end if;
    perform payments_lock_charge_batch(tenant, code_hashes, terminal_ids, currencies);
    for i in 1 .. items loop
        begin
            return query
                select i, null::text, null::text, null::text, charged
                  from payments_charge_code(code_hashes[i], terminal_ids[i], amounts_minor[i], currencies[i],
                                            actors[i], methods[i], request_ids[i], request_hashes[i]) charged;
        exception when others then
            item := i;
            outcome := null;
            get stacked diagnostics failed_sqlstate = returned_sqlstate, failed_message = message_text,
                                    failed_detail = pg_exception_detail;
            return next;
        end;
    end loop;
end
$$;

-- CreatePaymentCode in ONE statement (issue 14: it took four round trips — the tenant, the account read, the
-- insert, the commit — and every charge needs a code). The caller's rules are those of server/services/
-- access.py, checked here against the account row in the code's own statement, in this order:
--   ACCOUNT_NOT_FOUND   no such account, or one the caller may not see (another customer's)
--   NOT_ACCOUNT_OWNER   a caller who sees the account but does not own it (the back office)
--   CURRENCY_MISMATCH   the code's currency is not the account's
--   ACCOUNT_FROZEN / ACCOUNT_CLOSED
-- The expiry is the database's clock plus the code's lifetime, the clock payment_codes' CHECK reads. It moves
-- no money, so it runs with the application role's own rights (no SECURITY DEFINER); row-level security
-- scopes every statement to the transaction's tenant. Returns when the code expires.
create or replace function payments_create_code(
    caller_user_id uuid, caller_is_back_office boolean, code_account_id uuid, code_currency text,
    code_max_amount_minor bigint, ttl_s integer, new_code_hash bytea, created_by text
) returns timestamptz
    language plpgsql
as $$
declare
    tenant uuid := ledger_current_tenant();
    account record;
    expiry timestamptz := now() + make_interval(secs => ttl_s);
begin
    select a.owner_user_id, a.currency, a.status into account
      from accounts a
     where a.tenant_id = tenant and a.account_id = code_account_id;
    if not found or not (caller_is_back_office or account.owner_user_id is not distinct from caller_user_id) then
        perform ledger_fail('ACCOUNT_NOT_FOUND', jsonb_build_object('accountId', code_account_id));
    end if;
    if caller_user_id is null or account.owner_user_id is distinct from caller_user_id then
        perform ledger_fail('NOT_ACCOUNT_OWNER', jsonb_build_object('accountId', code_account_id));
    end if;
    if account.currency <> code_currency then
        perform ledger_fail('CURRENCY_MISMATCH', jsonb_build_object('accountCurrency', account.currency));
    end if;
    if account.status <> 'active' then
        perform ledger_fail(ledger_status_failure(account.status), jsonb_build_object('accountId', code_account_id));
    end if;
    insert into payment_codes (tenant_id, code_hash, account_id, currency, max_amount_minor, expires_at, created_by)
    values (tenant, new_code_hash, code_account_id, code_currency, code_max_amount_minor, expiry, created_by);
    return expiry;
end
$$;

create or replace function payments_create_code_in(
    tenant uuid, caller_user_id uuid, caller_is_back_office boolean, code_account_id uuid, code_currency text,
    code_max_amount_minor bigint, ttl_s integer, new_code_hash bytea, created_by text
) returns timestamptz
    language plpgsql
    set search_path = pg_catalog, public
as $$
begin
    perform set_config('app.tenant_id', tenant::text, true);
    return payments_create_code(caller_user_id, caller_is_back_office, code_account_id, code_currency,
                                code_max_amount_minor, ttl_s, new_code_hash, created_by);
end
$$;

-- Group commit of CreatePaymentCode (storage/group_commit.py): several codes of one tenant in ONE statement and
-- ONE transaction, each in its own subtransaction, so a refused one is rolled back alone with exactly the error
-- it would have had on its own. A code locks nothing before it is inserted, so the MultiXacts that made the
-- money batches run their items in one subtransaction first (10_movements.sql) do not arise here.
create or replace function payments_create_codes_in(
    tenant uuid, caller_user_ids uuid[], callers_are_back_office boolean[], code_account_ids uuid[],
    code_currencies text[], code_max_amounts_minor bigint[], ttls_s integer[], new_code_hashes bytea[],
    created_bys text[]
) returns table (item integer, failed_sqlstate text, failed_message text, failed_detail text, expires_at timestamptz)
    language plpgsql
    set search_path = pg_catalog, public
as $$
declare
    items integer := ledger_batch_items(array[
        cardinality(code_account_ids), cardinality(caller_user_ids), cardinality(callers_are_back_office),
        cardinality(code_currencies), cardinality(code_max_amounts_minor), cardinality(ttls_s),
        cardinality(new_code_hashes), cardinality(created_bys)]);
begin
    perform set_config('app.tenant_id', tenant::text, true);
    for i in 1 .. items loop
        item := i;
        failed_sqlstate := null;
        failed_message := null;
        failed_detail := null;
        begin
            expires_at := payments_create_code(caller_user_ids[i], callers_are_back_office[i], code_account_ids[i],
                                               code_currencies[i], code_max_amounts_minor[i], ttls_s[i],
                                               new_code_hashes[i], created_bys[i]);
        exception when others then
            expires_at := null;
            get stacked diagnostics failed_sqlstate = returned_sqlstate, failed_message = message_text,
                                    failed_detail = pg_exception_detail;
        end;
        return next;
    end loop;
end
$$;

-- Entry points owned by emoney_ledger (09_accounts.sql says why). ALTER ... OWNER needs the new owner to
-- hold CREATE on the schema at that moment; it keeps none afterwards. Nothing changes when it owns them.
grant create on schema public to emoney_ledger;
alter function payments_charge_code_in(uuid, bytea, uuid, bigint, text, text, text, text, bytea) owner to emoney_ledger;
alter function payments_authorize_code_in(uuid, bytea, uuid, bigint, text, timestamptz, text, text, text, bytea)
    owner to emoney_ledger;
alter function payments_charge_codes_in(uuid, bytea[], uuid[], bigint[], text[], text[], text[], text[], bytea[])
    owner to emoney_ledger;
revoke create on schema public from emoney_ledger;

grant execute on function
    payments_redeemable_code(bytea, uuid, text, text, text, bigint),
    payments_code_redeemed(bytea, text, text, uuid, text, uuid, uuid, uuid),
    payments_charge_code(bytea, uuid, bigint, text, text, text, text, bytea),
    payments_authorize_code(bytea, uuid, bigint, text, timestamptz, text, text, text, bytea),
    payments_lock_charge_batch(uuid, bytea[], uuid[], text[])
to emoney_ledger;  -- only from inside an entry point
grant execute on function
    payments_create_code(uuid, boolean, uuid, text, bigint, integer, bytea, text),
    payments_create_code_in(uuid, uuid, boolean, uuid, text, bigint, integer, bytea, text),
    payments_create_codes_in(uuid, uuid[], boolean[], uuid[], text[], bigint[], integer[], bytea[], text[]),
    payments_charge_code_in(uuid, bytea, uuid, bigint, text, text, text, text, bytea),
    payments_authorize_code_in(uuid, bytea, uuid, bigint, text, timestamptz, text, text, text, bytea),
    payments_charge_codes_in(uuid, bytea[], uuid[], bigint[], text[], text[], text[], text[], bytea[])
to emoney_app;
