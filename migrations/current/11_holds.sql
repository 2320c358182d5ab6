-- Holds: two-phase payments. A hold reserves funds on the payer's account (held_minor; the available
-- balance drops, the ledger balance does not); it is then captured (one transfer for all or part of it,
-- the rest released), voided, or expired by the background task once past its expiry (at most
-- ledger_max_hold_duration() after it was made). A terminal's AuthorizePayment makes one from a payment
-- code in one statement (12_payment_codes.sql).
--
-- Entry points are SECURITY DEFINER functions owned by emoney_ledger (09_accounts.sql says why). A hold
-- takes the locks of a movement, in the same order (08_balances.sql): idempotency key, audit stripe, the
-- hold, then accounts. The live event of a capture, a void or an expiry is sent by the service layer in the
-- same transaction, through payments_notify; a capture's receipt is read from its transfer (07_receipts.sql).

-- The hold as its audit events record it.
create or replace function ledger_hold_summary(hold holds) returns jsonb
    language sql immutable parallel safe
    return jsonb_build_object(
        'holdId', hold.hold_id, 'accountId', hold.account_id, 'merchantAccountId', hold.merchant_account_id,
        'amountMinor', hold.amount_minor::text, 'capturedMinor', hold.captured_minor::text,
        'currency', hold.currency, 'status', hold.status, 'expiresAt', hold.expires_at);

-- Result shape, the same for a first call and its replay (ledger_hold_outcome, 0004): read back by id
-- after the change, with the capture's transfer if there is one.
create or replace function ledger_hold_result(is_replay boolean, response bytea, wanted_hold_id uuid)
    returns setof ledger_hold_outcome
    language sql stable
as $$
    select is_replay, response, h.hold_id, h.account_id, h.merchant_account_id, h.terminal_id, h.currency,
           h.amount_minor, h.captured_minor, h.status, h.expires_at, h.request_id, h.actor, h.created_at,
           h.resolved_at,
           (select t.transfer_id from transfers t where t.tenant_id = h.tenant_id and t.hold_id = h.hold_id)
      from holds h
     where h.tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid and h.hold_id = wanted_hold_id
$$;

-- Lock a hold that is about to be resolved, refusing one resolved already.
create or replace function ledger_lock_authorized_hold(tenant uuid, wanted_hold_id uuid) returns holds
    language plpgsql
as $$
declare
    hold holds;
begin
    select * into hold from holds h where h.tenant_id = tenant and h.hold_id = wanted_hold_id for no key update;
    if not found then
        perform ledger_fail('HOLD_NOT_FOUND', jsonb_build_object('holdId', wanted_hold_id));
    end if;
    if hold.status <> 'authorized' then
        perform ledger_fail('HOLD_ALREADY_RESOLVED', jsonb_build_object('holdId', wanted_hold_id, 'status', hold.status));
    end if;
    return hold;
end
$$;

-- Reserve funds of the payer for a merchant, until expires_at.
create or replace function ledger_authorize_hold(
    payer_account_id uuid, merchant_account_id uuid, terminal_id uuid, amount_minor bigint, currency text,
    expires_at timestamptz, actor text, method text, request_id text, request_hash bytea
) returns setof ledger_hold_outcome
    language plpgsql
    security definer
    set search_path = pg_catalog, public, pg_temp
as $$
#variable_conflict use_variable
declare
    audit_event record;
    tenant uuid := ledger_current_tenant();
    claim record;
    payer accounts;
    payer_shard smallint;
    merchant accounts;
begin
    perform ledger_check_amount(amount_minor);
    if payer_account_id = merchant_account_id then
        perform ledger_fail('SAME_ACCOUNT', jsonb_build_object('accountId', payer_account_id));
    end if;
    if expires_at is null or expires_at <= now() or expires_at > now() + ledger_max_hold_duration() then
        perform ledger_fail('EXPIRY_OUT_OF_RANGE', jsonb_build_object('maximumSeconds',
            extract(epoch from ledger_max_hold_duration())::bigint::text));
    end if;
    claim := ledger_claim_request(actor, method, request_id, request_hash, gen_random_uuid());
    if claim.claimed then
        payer := ledger_usable_account(tenant, payer_account_id, currency);
        merchant := ledger_usable_account(tenant, merchant_account_id, currency);
        if not ledger_kinds_allowed('capture', payer.kind, merchant.kind) then
            perform ledger_fail('ACCOUNT_KIND_NOT_ALLOWED', jsonb_build_object(
                'transferKind', 'capture', 'debitKind', payer.kind, 'creditKind', merchant.kind));
        end if;
        payer_shard := ledger_apply_leg(tenant, payer, 0, amount_minor);
        -- A hold counts against the payer's limits (and the terminal's) when it is made (13_limits.sql).
        perform ledger_count_customer(tenant, payer, 'sent', amount_minor, now());
        perform ledger_count_terminal(tenant, terminal_id, currency, amount_minor, now());
        insert into holds (tenant_id, hold_id, account_id, merchant_account_id, terminal_id, currency, amount_minor,
                           expires_at, request_id, actor)
        values (tenant, claim.result_id, payer_account_id, merchant_account_id, terminal_id, currency, amount_minor,
                expires_at, request_id, actor);
        audit_event := audit_append(actor, method, request_id, jsonb_build_object('before', null, 'after',
            (select ledger_hold_summary(h) from holds h where h.tenant_id = tenant and h.hold_id = claim.result_id)));
    end if;
    return query select * from ledger_hold_result(not claim.claimed, claim.stored_response, claim.result_id);
end
$$;

-- Capture all or part of a hold: one transfer for the captured amount; the rest is released.
create or replace function ledger_capture_hold(
    captured_hold_id uuid, amount_minor bigint, actor text, method text, request_id text, request_hash bytea
) returns setof ledger_hold_outcome
    language plpgsql
    security definer
    set search_path = pg_catalog, public, pg_temp
as $$
#variable_conflict use_variable
declare
    audit_event record;
    tenant uuid := ledger_current_tenant();
    claim record;
    hold holds;
    payer accounts;
    merchant accounts;
    written transfers;
begin
    perform ledger_check_amount(amount_minor);
    claim := ledger_claim_request(actor, method, request_id, request_hash, captured_hold_id);
    if claim.claimed then
        hold := ledger_lock_authorized_hold(tenant, captured_hold_id);
        if hold.expires_at <= now() then
            perform ledger_fail('HOLD_EXPIRED', jsonb_build_object('holdId', captured_hold_id));
        end if;
        if amount_minor > hold.amount_minor then
            perform ledger_fail('CAPTURE_EXCEEDS_HOLD', jsonb_build_object(
                'holdId', captured_hold_id, 'heldMinor', hold.amount_minor::text));
        end if;
        payer := ledger_usable_account(tenant, hold.account_id, hold.currency);
        merchant := ledger_usable_account(tenant, hold.merchant_account_id, hold.currency);
        written := ledger_write_transfer(tenant, gen_random_uuid(), 'capture', payer, merchant, amount_minor,
                                         actor, request_id, null, hold.hold_id, hold.terminal_id, hold.amount_minor);
        perform ledger_release_hold_limits(tenant, hold, hold.amount_minor - amount_minor);
        update holds h set status = 'captured', captured_minor = amount_minor, resolved_at = now()
         where h.tenant_id = tenant and h.hold_id = captured_hold_id;
        audit_event := audit_append(actor, method, request_id, jsonb_build_object(
            'before', ledger_hold_summary(hold),
            'after', jsonb_build_object(
                'hold', (select ledger_hold_summary(h) from holds h where h.tenant_id = tenant and h.hold_id = captured_hold_id),
                'transfer', ledger_transfer_summary(written))));
    end if;
    return query select * from ledger_hold_result(not claim.claimed, claim.stored_response, claim.result_id);
end
$$;

-- Release the whole hold; nothing moves.
create or replace function ledger_void_hold(
    voided_hold_id uuid, actor text, method text, request_id text, request_hash bytea
) returns setof ledger_hold_outcome
    language plpgsql
    security definer
    set search_path = pg_catalog, public, pg_temp
as $$
#variable_conflict use_variable
declare
    audit_event record;
    tenant uuid := ledger_current_tenant();
    claim record;
    hold holds;
begin
    claim := ledger_claim_request(actor, method, request_id, request_hash, voided_hold_id);
    if claim.claimed then
        hold := ledger_lock_authorized_hold(tenant, voided_hold_id);
        -- Releasing never lowers the available balance: no status or floor to check.
        update accounts a set held_minor = a.held_minor - hold.amount_minor, updated_at = now()
         where a.tenant_id = tenant and a.account_id = hold.account_id;
        perform ledger_release_hold_limits(tenant, hold, hold.amount_minor);
        update holds h set status = 'voided', resolved_at = now()
         where h.tenant_id = tenant and h.hold_id = voided_hold_id;
        audit_event := audit_append(actor, method, request_id, jsonb_build_object(
            'before', ledger_hold_summary(hold),
            'after', (select ledger_hold_summary(h) from holds h where h.tenant_id = tenant and h.hold_id = voided_hold_id)));
    end if;
    return query select * from ledger_hold_result(not claim.claimed, claim.stored_response, claim.result_id);
end
$$;

-- Expire due holds (the tenant's, or one account's), releasing their funds. Holds are taken with
-- SKIP LOCKED (one being captured right now is left alone) and in account order, so the payers'
-- rows are locked in ascending account_id. Returns how many were expired.
create or replace function ledger_expire_holds(only_account_id uuid, batch_limit integer) returns integer
    language plpgsql
as $$
declare
    audit_event record;
    tenant uuid := ledger_current_tenant();
    hold holds;
    expired integer := 0;
begin
    perform audit_acquire_stripe();  -- held until commit: taken before any account lock
    for hold in
        select * from holds h
         where h.tenant_id = tenant and h.status = 'authorized' and h.expires_at <= now()
           and (only_account_id is null or h.account_id = only_account_id)
         order by h.account_id, h.expires_at
         limit least(greatest(batch_limit, 1), 1000)
           for no key update skip locked
    loop
        update accounts a set held_minor = a.held_minor - hold.amount_minor, updated_at = now()
         where a.tenant_id = tenant and a.account_id = hold.account_id;
        perform ledger_release_hold_limits(tenant, hold, hold.amount_minor);
        update holds h set status = 'expired', resolved_at = now()
         where h.tenant_id = tenant and h.hold_id = hold.hold_id;
        audit_event := audit_append('system', 'ledger/ExpireHold', 'expire-' || hold.hold_id::text, jsonb_build_object(
            'before', ledger_hold_summary(hold),
            'after', jsonb_build_object('holdId', hold.hold_id, 'status', 'expired')));
        expired := expired + 1;
    end loop;
    return expired;
end
$$;

-- The background task's entry point: expire up to `batch_limit` due holds of the current tenant and
-- return them.
create or replace function ledger_expire_due_holds(batch_limit integer)
    returns setof ledger_hold_outcome
    language plpgsql
    security definer
    set search_path = pg_catalog, public, pg_temp
as $$
#variable_conflict use_column
declare
    tenant uuid := ledger_current_tenant();
begin
    perform ledger_expire_holds(null, batch_limit);
    -- resolved_at = now() is this transaction's start time: exactly the holds expired above.
    return query
        select r.* from holds h
         cross join lateral ledger_hold_result(false, null, h.hold_id) r
         where h.tenant_id = tenant and h.status = 'expired' and h.resolved_at = now()
         order by h.account_id, h.expires_at;
end
$$;

-- Which tenants have holds past their expiry (for the background task, before it knows a tenant). The
-- owner reads due holds across tenants (policy holds_owner_read); the application role has no such policy.
create or replace function tenants_with_due_holds(tenant_limit integer) returns setof uuid
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
as $$
    select distinct h.tenant_id from public.holds h
     where h.status = 'authorized' and h.expires_at <= now()
     limit least(greatest(tenant_limit, 1), 1000)
$$;

-- Entry points owned by emoney_ledger. ALTER ... OWNER needs the new owner to hold CREATE on the schema at
-- that moment; it keeps none afterwards. Nothing changes when it owns them already.
grant create on schema public to emoney_ledger;
alter function ledger_authorize_hold(uuid, uuid, uuid, bigint, text, timestamptz, text, text, text, bytea)
    owner to emoney_ledger;
alter function ledger_capture_hold(uuid, bigint, text, text, text, bytea) owner to emoney_ledger;
alter function ledger_void_hold(uuid, text, text, text, bytea) owner to emoney_ledger;
alter function ledger_expire_due_holds(integer) owner to emoney_ledger;
revoke create on schema public from emoney_ledger;

grant execute on function ledger_hold_summary(holds), ledger_hold_result(boolean, bytea, uuid)
to emoney_app, emoney_ledger;
grant execute on function ledger_lock_authorized_hold(uuid, uuid), ledger_expire_holds(uuid, integer)
to emoney_ledger;  -- only from inside an entry point
revoke all on function tenants_with_due_holds(integer) from public;
grant execute on function
    ledger_authorize_hold(uuid, uuid, uuid, bigint, text, timestamptz, text, text, text, bytea),
    ledger_capture_hold(uuid, bigint, text, text, text, bytea),
    ledger_void_hold(uuid, text, text, text, bytea),
    ledger_expire_due_holds(integer),
    tenants_with_due_holds(integer)
to emoney_app;
