-- Limits, rules and failures shared by the ledger's constraints and functions.
--
-- Mirrored in Python (domain/ledger_rules.py, storage/ledger.py LEDGER_FAILURES);
-- tests/integration/test_ledger_rules_agree.py checks that both sides agree.
-- Money is bigint minor units, never a float.

create or replace function ledger_max_transfer_minor() returns bigint
    language sql immutable parallel safe
    return 100000000;  -- 1,000,000.00 in a two-decimal currency

create or replace function ledger_max_hold_duration() returns interval
    language sql immutable parallel safe
    return interval '30 days';

-- The most CreateTransfers one group-committed batch carries (payments_create_transfers_in).
create or replace function ledger_max_batch_items() returns integer
    language sql immutable parallel safe
    return 64;

-- A group-committed batch's item count, from the lengths of its argument arrays (one per argument, the
-- first one's length is the count): 0 to ledger_max_batch_items() items, every array as long as the first,
-- or 22023 (invalid_parameter_value). A missing array (its length NULL) is refused like a short one.
create or replace function ledger_batch_items(lengths integer[]) returns integer
    language plpgsql immutable
as $$
declare
    items integer := coalesce(lengths[1], -1);
begin
    if items < 0 or items > ledger_max_batch_items() or array_position(lengths, null) is not null
       or items <> any (lengths)
    then
        raise exception using errcode = '22023',
            message = 'a batch is 0 to ledger_max_batch_items() items, each argument array as long as the others';
    end if;
    return items;
end
$$;

-- How many independent hash chains each tenant's audit log has (see 04_audit.sql).
create or replace function audit_stripe_count() returns integer
    language sql immutable parallel safe
    return 32;

create or replace function ledger_amount_in_range(amount_minor bigint) returns boolean
    language sql immutable parallel safe
    return coalesce(amount_minor between 1 and ledger_max_transfer_minor(), false);

-- Which account kinds each transfer kind may debit and credit.
create or replace function ledger_kinds_allowed(transfer_kind text, debit_kind text, credit_kind text) returns boolean
    language sql immutable parallel safe
    return case transfer_kind
        when 'p2p' then debit_kind = 'customer' and credit_kind = 'customer'
        when 'payment' then debit_kind = 'customer' and credit_kind = 'merchant'
        when 'capture' then debit_kind = 'customer' and credit_kind = 'merchant'
        when 'refund' then debit_kind = 'merchant' and credit_kind = 'customer'
        when 'top_up' then debit_kind = 'system_float' and credit_kind in ('customer', 'merchant')
        when 'withdrawal' then debit_kind in ('customer', 'merchant') and credit_kind = 'system_float'
        else false
    end;

-- Every business failure, with its SQLSTATE of the class `EM` this project reserves; the message is the
-- stable identifier (INSUFFICIENT_FUNDS ...). The table in storage/ledger.py must match: it maps each one
-- to a domain error.
create or replace function ledger_fail(failure text, detail jsonb default '{}'::jsonb) returns void
    language plpgsql
as $$
begin
    raise exception using
        errcode = case failure
            when 'INSUFFICIENT_FUNDS' then 'EM001'
            when 'ACCOUNT_FROZEN' then 'EM002'
            when 'ACCOUNT_CLOSED' then 'EM003'
            when 'ACCOUNT_NOT_FOUND' then 'EM004'
            when 'CURRENCY_MISMATCH' then 'EM005'
            when 'SAME_ACCOUNT' then 'EM006'
            when 'AMOUNT_OUT_OF_RANGE' then 'EM007'
            when 'HOLD_NOT_FOUND' then 'EM008'
            when 'HOLD_ALREADY_RESOLVED' then 'EM009'
            when 'HOLD_EXPIRED' then 'EM010'
            when 'CAPTURE_EXCEEDS_HOLD' then 'EM011'
            when 'REFUND_EXCEEDS_PAYMENT' then 'EM012'
            when 'REQUEST_ID_REUSED' then 'EM013'
            when 'ACCOUNT_NOT_EMPTY' then 'EM014'
            when 'ACCOUNT_KIND_NOT_ALLOWED' then 'EM015'
            when 'TRANSFER_NOT_FOUND' then 'EM016'
            when 'TRANSFER_NOT_REFUNDABLE' then 'EM017'
            when 'OWNER_NOT_FOUND' then 'EM018'
            when 'EXPIRY_OUT_OF_RANGE' then 'EM019'
            when 'NOT_ACCOUNT_OWNER' then 'EM020'
            when 'PAYMENT_CODE_NOT_FOUND' then 'EM021'
            when 'PAYMENT_CODE_USED' then 'EM022'
            when 'PAYMENT_CODE_EXPIRED' then 'EM023'
            when 'AMOUNT_EXCEEDS_CODE' then 'EM024'
            when 'MERCHANT_ACCOUNT_MISSING' then 'EM025'
            when 'LIMIT_EXCEEDED' then 'EM026'
            else 'EM000'  -- a programming error (e.g. no tenant set): answered as INTERNAL
        end,
        message = failure,
        detail = detail::text;
end
$$;

create or replace function ledger_tenant_not_set() returns uuid
    language plpgsql
as $$
begin
    perform ledger_fail('TENANT_NOT_SET');
    return null;
end
$$;

-- The transaction's tenant (app.tenant_id, set by the unit of work or by an entry point's `tenant`
-- argument), or an error: never "all tenants".
create or replace function ledger_current_tenant() returns uuid
    language sql stable
    return coalesce(nullif(current_setting('app.tenant_id', true), '')::uuid, ledger_tenant_not_set());

-- A movement's amount: 1 to ledger_max_transfer_minor(), or AMOUNT_OUT_OF_RANGE naming the maximum.
create or replace function ledger_check_amount(amount_minor bigint) returns void
    language plpgsql
as $$
begin
    if not ledger_amount_in_range(amount_minor) then
        perform ledger_fail('AMOUNT_OUT_OF_RANGE', jsonb_build_object('maximumMinor', ledger_max_transfer_minor()::text));
    end if;
end
$$;

create or replace function ledger_status_failure(status text) returns text
    language sql immutable parallel safe
    return case status when 'frozen' then 'ACCOUNT_FROZEN' when 'closed' then 'ACCOUNT_CLOSED' end;

-- Anyone running ledger code may evaluate the rules: the application role (its checks and the tests
-- read them) and emoney_ledger (the entry points' owner, 0012).
grant execute on function
    ledger_max_transfer_minor(), ledger_max_hold_duration(), audit_stripe_count(), ledger_amount_in_range(bigint),
    ledger_kinds_allowed(text, text, text), ledger_fail(text, jsonb), ledger_tenant_not_set(),
    ledger_current_tenant(), ledger_status_failure(text), ledger_check_amount(bigint), ledger_max_batch_items(),
    ledger_batch_items(integer[])
to emoney_app, emoney_ledger;
