-- A customer's transfer in ONE statement: the caller's checks, the movement, its receipt request and
-- its live event, so the service can send `set_config` + this call + COMMIT in one pipeline — one
-- network round trip per transfer, and no row lock is held while Python waits (issue #6).
--
-- The rules are the service layer's (server/services/payments.py, `create_transfer`), enforced here
-- in the same transaction as the movement:
--   * an account the caller may not see (missing, or another customer's) is ACCOUNT_NOT_FOUND;
--   * a back-office caller sees every account but may send only from its own: NOT_ACCOUNT_OWNER;
--   * paying a merchant account is a `payment`, anything else a `p2p` transfer.
-- A replay (same caller and request_id) returns the original transfer as it was created: a new
-- transfer is always `completed` with nothing refunded, so the reply is rebuilt byte for byte from the
-- row without storing it, even after later refunds changed the row.

create function payments_create_transfer(
    caller_user_id uuid, caller_is_back_office boolean, from_account_id uuid, to_account_id uuid,
    amount_minor bigint, currency text, actor text, method text, request_id text, request_hash bytea
) returns setof ledger_transfer_outcome
    language plpgsql
    set search_path = pg_catalog, public
as $$
#variable_conflict use_variable
declare
    tenant uuid := ledger_current_tenant();
    source_owner uuid;
    target_kind text;
    outcome ledger_transfer_outcome;
begin
    select a.owner_user_id into source_owner
      from accounts a
     where a.tenant_id = tenant and a.account_id = from_account_id;
    if not found or not (caller_is_back_office or source_owner is not distinct from caller_user_id) then
        perform ledger_fail('ACCOUNT_NOT_FOUND', jsonb_build_object('accountId', from_account_id));
    end if;
    if caller_user_id is null or source_owner is distinct from caller_user_id then
        raise exception using errcode = 'EM020', message = 'NOT_ACCOUNT_OWNER',
            detail = jsonb_build_object('accountId', from_account_id)::text;
    end if;
    select a.kind into target_kind
      from accounts a
     where a.tenant_id = tenant and a.account_id = to_account_id;
    select * into outcome
      from ledger_post_transfer(case when target_kind = 'merchant' then 'payment' else 'p2p' end,
                                from_account_id, to_account_id, amount_minor, currency, null,
                                actor, method, request_id, request_hash);
    if outcome.replayed then
        if outcome.stored_response is null then
            outcome.status := 'completed';
            outcome.refunded_minor := 0;
        end if;
    else
        insert into receipt_outbox (tenant_id, payment_id) values (tenant, outcome.transfer_id)
            on conflict do nothing;
        perform pg_notify('emoney_payment_events', json_build_object(
            'tenantId', tenant, 'paymentId', outcome.transfer_id, 'event', 'created', 'terminalId', null,
            'accountIds', json_build_array(outcome.debit_account_id, outcome.credit_account_id))::text);
    end if;
    return next outcome;
end
$$;

grant execute on function
    payments_create_transfer(uuid, boolean, uuid, uuid, bigint, text, text, text, text, bytea)
to emoney_app;
