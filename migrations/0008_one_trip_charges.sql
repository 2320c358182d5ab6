-- A terminal's ChargePaymentCode / AuthorizePayment in ONE statement (like 0007 for transfers): lock
-- the code, check it, find the terminal's merchant account, move the money (or hold it), mark the code
-- used, request the receipt and announce the live event — sent with `set_config` and COMMIT as one
-- pipeline, so the code's row lock is never held while Python waits.
--
-- The rules are the service layer's (server/services/payments.py, `redeem_code`):
--   PAYMENT_CODE_NOT_FOUND   no such code in this tenant
--   PAYMENT_CODE_USED        already used, by another caller or another request_id
--   PAYMENT_CODE_EXPIRED     unused and past its expiry
--   CURRENCY_MISMATCH        the request's currency is not the code's
--   AMOUNT_EXCEEDS_CODE      above the code's maximum (detail: maxAmountMinor)
--   MERCHANT_ACCOUNT_MISSING the terminal's merchant has no active merchant account in that currency
-- A retry by the same terminal with the same request_id finds the code used by itself and replays.

-- Every business failure, with its SQLSTATE (class EM): 0004's list plus NOT_ACCOUNT_OWNER (raised
-- directly by 0007) and the payment-code failures. The table in storage/ledger.py must match.
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
            else 'EM000'  -- a programming error (e.g. no tenant set): answered as INTERNAL
        end,
        message = failure,
        detail = detail::text;
end
$$;

-- Lock and check the code; the payer's and the merchant's accounts.
create function payments_redeemable_code(
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

-- After the movement: mark the code used (first time only), queue the receipt, announce the event.
create function payments_code_redeemed(
    code_hash bytea, actor text, request_id text, produced uuid, receipt_for uuid, event text,
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
    if receipt_for is not null then
        insert into receipt_outbox (tenant_id, payment_id) values (tenant, receipt_for) on conflict do nothing;
    end if;
    perform pg_notify('emoney_payment_events', json_build_object(
        'tenantId', tenant, 'paymentId', produced, 'event', event, 'terminalId', terminal_id,
        'accountIds', json_build_array(payer_account_id, merchant_account_id))::text);
end
$$;

create function payments_charge_code(
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
    if outcome.replayed then
        if outcome.stored_response is null then  -- as created: later refunds do not change the replay
            outcome.status := 'completed';
            outcome.refunded_minor := 0;
        end if;
    else
        perform payments_code_redeemed(code_hash, actor, request_id, outcome.transfer_id, outcome.transfer_id,
                                       'created', terminal_id, code.payer_account_id, code.merchant_account_id);
    end if;
    return next outcome;
end
$$;

create function payments_authorize_code(
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
        perform payments_code_redeemed(code_hash, actor, request_id, outcome.hold_id, null,
                                       'created', terminal_id, code.payer_account_id, code.merchant_account_id);
    end if;
    return next outcome;
end
$$;

grant execute on function
    payments_redeemable_code(bytea, uuid, text, text, text, bigint),
    payments_code_redeemed(bytea, text, text, uuid, uuid, text, uuid, uuid, uuid),
    payments_charge_code(bytea, uuid, bigint, text, text, text, text, bytea),
    payments_authorize_code(bytea, uuid, bigint, text, timestamptz, text, text, text, bytea)
to emoney_app;
