-- Movements: transfers (p2p, payment, top-up, withdrawal), refunds, and the customer's CreateTransfer in
-- one statement. Captures of holds are in 11_holds.sql, charges of payment codes in 12_payment_codes.sql.
--
-- Every movement is ONE call of an entry point (SECURITY DEFINER, owned by emoney_ledger: 09_accounts.sql
-- says why) that claims the idempotency key, takes its audit stripe, checks and changes both accounts in
-- account_id order (08_balances.sql: the legs, the floor, the locking order), writes the transfer and its
-- two entries, and appends the audit event. So no row lock is ever held across a round trip between
-- Python and the database. A replay of the same (caller, request_id) returns what the first call made.

-- Write a transfer: both legs in account_id order, the transfer row, its two entries.
create or replace function ledger_write_transfer(
    tenant uuid, new_transfer_id uuid, transfer_kind text, debit accounts, credit accounts, amount bigint,
    actor text, request_id text, related_transfer uuid, resolved_hold uuid, terminal uuid, released_held bigint,
    description text default null
) returns transfers
    language plpgsql
as $$
#variable_conflict use_variable
declare
    written transfers;
    debit_shard smallint;
    credit_shard smallint;
    credit_first boolean;
begin
    -- Assignments, not PERFORM: a PERFORM starts an executor for every call, an assignment does not.
    if debit.account_id < credit.account_id then
        debit_shard := ledger_apply_leg(tenant, debit, -amount, -released_held);
        credit_shard := ledger_apply_leg(tenant, credit, amount, 0);
    else
        credit_shard := ledger_apply_leg(tenant, credit, amount, 0);
        debit_shard := ledger_apply_leg(tenant, debit, -amount, -released_held);
    end if;
    -- The value limits (13_limits.sql says what counts): after both legs, so the balance limit sees the credit;
    -- the two customers' usage rows in ascending owner order, one global order as for the account rows.
    -- A tenant without limits pays one index probe for them, per movement.
    if (debit.kind = 'customer' or credit.kind = 'customer') and exists (select 1 from level_limits l where l.tenant_id = tenant) then
        credit_first := credit.owner_user_id < debit.owner_user_id;
        if credit_first and credit.kind = 'customer' and transfer_kind <> 'refund' then
            perform ledger_count_customer(tenant, credit, 'received', amount, now());
        end if;
        if debit.kind = 'customer' and transfer_kind not in ('capture', 'refund') then
            perform ledger_count_customer(tenant, debit, 'sent', amount, now());
        end if;
        if not coalesce(credit_first, false) and credit.kind = 'customer' and transfer_kind <> 'refund' then
            perform ledger_count_customer(tenant, credit, 'received', amount, now());
        end if;
    end if;
    if terminal is not null and transfer_kind = 'payment' then
        perform ledger_count_terminal(tenant, terminal, debit.currency, amount, now());
    end if;
    insert into transfers (tenant_id, transfer_id, kind, debit_account_id, credit_account_id, amount_minor, currency,
                           request_id, actor, related_transfer_id, hold_id, terminal_id, description)
    values (tenant, new_transfer_id, transfer_kind, debit.account_id, credit.account_id, amount, debit.currency,
            request_id, actor, related_transfer, resolved_hold, terminal, description)
    returning * into written;
    insert into ledger_entries (tenant_id, transfer_id, account_id, amount_minor, currency, created_at)
    values (tenant, new_transfer_id, debit.account_id, -amount, debit.currency, written.created_at),
           (tenant, new_transfer_id, credit.account_id, amount, debit.currency, written.created_at);
    return written;
end
$$;

-- The transfer as its audit events record it.
create or replace function ledger_transfer_summary(transfer transfers) returns jsonb
    language sql immutable parallel safe
    return jsonb_build_object(
        'transferId', transfer.transfer_id, 'kind', transfer.kind, 'debitAccountId', transfer.debit_account_id,
        'creditAccountId', transfer.credit_account_id, 'amountMinor', transfer.amount_minor::text,
        'currency', transfer.currency, 'status', transfer.status, 'refundedMinor', transfer.refunded_minor::text,
        'description', transfer.description);

-- Result shape, the same for a first call and its replay (ledger_transfer_outcome, 0004): a new transfer
-- straight from its row, a replay read back by id.
create or replace function ledger_transfer_outcome_of(transfer transfers) returns ledger_transfer_outcome
    language sql immutable parallel safe
    return row(false, null, transfer.transfer_id, transfer.kind, transfer.debit_account_id, transfer.credit_account_id,
               transfer.amount_minor, transfer.currency, transfer.status, transfer.refunded_minor, transfer.request_id,
               transfer.actor, transfer.related_transfer_id, transfer.hold_id, transfer.terminal_id,
               transfer.created_at, transfer.description)::ledger_transfer_outcome;

create or replace function ledger_transfer_result(is_replay boolean, response bytea, wanted_transfer_id uuid)
    returns setof ledger_transfer_outcome
    language sql stable
as $$
    select is_replay, response, t.transfer_id, t.kind, t.debit_account_id, t.credit_account_id, t.amount_minor,
           t.currency, t.status, t.refunded_minor, t.request_id, t.actor, t.related_transfer_id, t.hold_id,
           t.terminal_id, t.created_at, t.description
      from transfers t
     where t.tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid and t.transfer_id = wanted_transfer_id
$$;

-- A p2p transfer, a payment, a top-up or a withdrawal (the service layer finds the float for the last two).
create or replace function ledger_post_transfer(
    transfer_kind text, debit_account_id uuid, credit_account_id uuid, amount_minor bigint, currency text,
    terminal_id uuid, actor text, method text, request_id text, request_hash bytea, description text default null
) returns setof ledger_transfer_outcome
    language plpgsql
    security definer
    set search_path = pg_catalog, public, pg_temp
as $$
#variable_conflict use_variable
declare
    audit_event record;
    tenant uuid := ledger_current_tenant();
    claim record;
    debit accounts;
    credit accounts;
    written transfers;
begin
    if transfer_kind is null or transfer_kind not in ('p2p', 'payment', 'top_up', 'withdrawal') then
        raise exception using errcode = '22023', message = 'post_transfer moves p2p, payment, top_up or withdrawal';
    end if;
    perform ledger_check_amount(amount_minor);
    if debit_account_id = credit_account_id then
        perform ledger_fail('SAME_ACCOUNT', jsonb_build_object('accountId', debit_account_id));
    end if;
    claim := ledger_claim_request(actor, method, request_id, request_hash, gen_random_uuid());
    if claim.claimed then
        debit := ledger_usable_account(tenant, debit_account_id, currency);
        credit := ledger_usable_account(tenant, credit_account_id, currency);
        if not ledger_kinds_allowed(transfer_kind, debit.kind, credit.kind) then
            perform ledger_fail('ACCOUNT_KIND_NOT_ALLOWED', jsonb_build_object(
                'transferKind', transfer_kind, 'debitKind', debit.kind, 'creditKind', credit.kind));
        end if;
        written := ledger_write_transfer(tenant, claim.result_id, transfer_kind, debit, credit, amount_minor,
                                         actor, request_id, null, null, terminal_id, 0, description);
        audit_event := audit_append(actor, method, request_id,
                             jsonb_build_object('before', null, 'after', ledger_transfer_summary(written)));
        return next ledger_transfer_outcome_of(written);
        return;
    end if;
    return query select * from ledger_transfer_result(true, claim.stored_response, claim.result_id);
end
$$;

-- A replay of a movement with no stored reply answers with the transfer as it was created — always
-- `completed`, nothing refunded — so that later refunds never change what a retry receives.
create or replace function ledger_transfer_as_created(outcome ledger_transfer_outcome) returns ledger_transfer_outcome
    language plpgsql immutable
as $$
begin
    if outcome.replayed and outcome.stored_response is null then
        outcome.status := 'completed';
        outcome.refunded_minor := 0;
    end if;
    return outcome;
end
$$;

-- Refund all or part of a payment (or capture). The payment row is locked, so concurrent refunds
-- of one payment take turns and their total never exceeds what was paid.
create or replace function ledger_refund(
    payment_transfer_id uuid, amount_minor bigint, actor text, method text, request_id text, request_hash bytea
) returns setof ledger_transfer_outcome
    language plpgsql
    security definer
    set search_path = pg_catalog, public, pg_temp
as $$
#variable_conflict use_variable
declare
    audit_event record;
    tenant uuid := ledger_current_tenant();
    claim record;
    payment transfers;
    merchant accounts;
    customer accounts;
    written transfers;
begin
    perform ledger_check_amount(amount_minor);
    claim := ledger_claim_request(actor, method, request_id, request_hash, gen_random_uuid());
    if claim.claimed then
        select * into payment from transfers t
         where t.tenant_id = tenant and t.transfer_id = payment_transfer_id
           for no key update;
        if not found then
            perform ledger_fail('TRANSFER_NOT_FOUND', jsonb_build_object('transferId', payment_transfer_id));
        end if;
        if payment.kind not in ('payment', 'capture') then
            perform ledger_fail('TRANSFER_NOT_REFUNDABLE', jsonb_build_object('transferId', payment_transfer_id,
                                                                              'kind', payment.kind));
        end if;
        if payment.refunded_minor + amount_minor > payment.amount_minor then
            perform ledger_fail('REFUND_EXCEEDS_PAYMENT', jsonb_build_object(
                'transferId', payment_transfer_id,
                'refundableMinor', (payment.amount_minor - payment.refunded_minor)::text));
        end if;
        merchant := ledger_usable_account(tenant, payment.credit_account_id, payment.currency);
        customer := ledger_usable_account(tenant, payment.debit_account_id, payment.currency);
        written := ledger_write_transfer(tenant, claim.result_id, 'refund', merchant, customer, amount_minor,
                                         actor, request_id, payment.transfer_id, null, payment.terminal_id, 0);
        update transfers t
           set refunded_minor = t.refunded_minor + amount_minor,
               status = case when t.refunded_minor + amount_minor = t.amount_minor then 'refunded'
                             else 'partially_refunded' end
         where t.tenant_id = tenant and t.transfer_id = payment.transfer_id;
        audit_event := audit_append(actor, method, request_id, jsonb_build_object(
            'before', jsonb_build_object('transferId', payment.transfer_id, 'refundedMinor', payment.refunded_minor::text),
            'after', jsonb_build_object('transferId', payment.transfer_id,
                                        'refundedMinor', (payment.refunded_minor + amount_minor)::text,
                                        'refund', ledger_transfer_summary(written))));
    end if;
    return query select * from ledger_transfer_result(not claim.claimed, claim.stored_response, claim.result_id);
end
$$;

-- ---------------------------------------------------------------------------------------------
-- CreateTransfer in ONE statement: the caller's checks, the movement and its live event (its receipt is
-- read from the transfer row, 07_receipts.sql). The service layer's rules for CreateTransfer, enforced here in the movement's own transaction:
--   * an account the caller may not see (missing, or another customer's) is ACCOUNT_NOT_FOUND;
--   * a back-office caller sees every account but may send only from its own: NOT_ACCOUNT_OWNER;
--   * paying a merchant account is a `payment`, anything else a `p2p` transfer.
-- A replay (same caller and request_id) returns the original transfer as it was created: a new
-- transfer is always `completed` with nothing refunded, so the reply is rebuilt byte for byte from the
-- row without storing it, even after later refunds changed the row.
create or replace function payments_create_transfer(
    caller_user_id uuid, caller_is_back_office boolean, from_account_id uuid, to_account_id uuid,
    amount_minor bigint, currency text, actor text, method text, request_id text, request_hash bytea,
    description text default null
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
        perform ledger_fail('NOT_ACCOUNT_OWNER', jsonb_build_object('accountId', from_account_id));
    end if;
    select a.kind into target_kind
      from accounts a
     where a.tenant_id = tenant and a.account_id = to_account_id;
    select * into outcome
      from ledger_post_transfer(case when target_kind = 'merchant' then 'payment' else 'p2p' end,
                                from_account_id, to_account_id, amount_minor, currency, null,
                                actor, method, request_id, request_hash, description);
    outcome := ledger_transfer_as_created(outcome);
    if not outcome.replayed then
        perform payments_notify(tenant, outcome.transfer_id, 'created', null,
                                array[outcome.debit_account_id, outcome.credit_account_id]);
    end if;
    return next outcome;
end
$$;

-- The entry point: it takes the tenant as its first argument and sets `app.tenant_id` itself, so the
-- whole movement is ONE statement on an autocommit connection (storage/unit_of_work.py one_statement): its
-- own transaction, committed when it returns — one round trip, sent with the extended protocol as a
-- prepared statement, and no row lock held while Python waits (issue #6). The application role may call
-- set_config anyway: this adds no privilege. Row-level security reads the setting in every statement the
-- called function runs.
create or replace function payments_create_transfer_in(
    tenant uuid, caller_user_id uuid, caller_is_back_office boolean, from_account_id uuid, to_account_id uuid,
    amount_minor bigint, currency text, actor text, method text, request_id text, request_hash bytea,
    description text default null
) returns setof ledger_transfer_outcome
    language plpgsql
    security definer
    set search_path = pg_catalog, public, pg_temp
as $$
begin
    perform set_config('app.tenant_id', tenant::text, true);
    return query select * from payments_create_transfer(caller_user_id, caller_is_back_office, from_account_id,
        to_account_id, amount_minor, currency, actor, method, request_id, request_hash, description);
end
$$;

-- Group commit (issue 14): several CreateTransfers of one tenant in ONE statement and ONE transaction, so
-- one commit and one WAL flush serve them all (storage/group_commit.py gathers concurrent calls of a
-- process). Each item keeps its own outcome, exactly as the one-item entry point would have given it: its
-- transfer, or the refusal (INSUFFICIENT_FUNDS, ...) with its SQLSTATE, message and detail, while the items
-- before and after it commit. An item replaying an earlier item of the same batch (same caller and
-- request_id) gets that item's transfer, as a later retry would.
--
-- Two paths to the same outcomes:
--   * first, every item in ONE subtransaction (the block's EXCEPTION clause), their outcomes kept until all
--     have run. This is the common case — nothing refused — and it costs one subtransaction per batch;
--   * if any item fails, that whole attempt is rolled back and the batch runs again with each item in its
--     own subtransaction, the refused one reported and rolled back alone.
-- Why not always one subtransaction per item: the batch locks its accounts before any item runs (below), and
-- a row locked by a transaction and then updated by one of its subtransactions becomes a MultiXact (the
-- lock must survive the subtransaction's rollback) — a new MultiXact per account update, which every later
-- reader of the row then resolves (GetMultiXactIdMembers was PostgreSQL's busiest function under group
-- commit). A batch with a refused item pays its first attempt twice; a batch without pays neither.
--
-- Locking order: before any item runs, the batch locks, in ascending account_id, every account row its
-- items will lock anyway — each payer, and each payee without balance shards (a sharded payee is credited
-- through one shard taken with SKIP LOCKED and never locked whole: a hot merchant stays parallel). So two
-- batches, or a batch and a single movement, always take account rows in the same global order.
create or replace function payments_lock_transfer_batch(tenant uuid, from_account_ids uuid[], to_account_ids uuid[])
    returns void
    language plpgsql
as $$
begin
    perform 1
       from (select a.account_id from accounts a
              where a.tenant_id = tenant
                and (a.account_id = any (from_account_ids) or (a.account_id = any (to_account_ids) and a.balance_shards = 0))
              order by a.account_id
                for no key update) locked;
end
$$;

create or replace function payments_create_transfers_in(
    tenant uuid, caller_user_ids uuid[], callers_are_back_office boolean[], from_account_ids uuid[],
    to_account_ids uuid[], amounts_minor bigint[], currencies text[], actors text[], methods text[],
    request_ids text[], request_hashes bytea[], descriptions text[] default null
) returns table (item integer, failed_sqlstate text, failed_message text, failed_detail text,
                 outcome ledger_transfer_outcome)
    language plpgsql
    security definer
    set search_path = pg_catalog, public, pg_temp
as $$
declare
    items integer := ledger_batch_items(array[
        cardinality(from_account_ids), cardinality(caller_user_ids), cardinality(callers_are_back_office),
        cardinality(to_account_ids), cardinality(amounts_minor), cardinality(currencies), cardinality(actors),
        cardinality(methods), cardinality(request_ids), cardinality(request_hashes),
        coalesce(cardinality(descriptions), cardinality(from_account_ids))]);  -- descriptions may be left out
    one ledger_transfer_outcome;
    outcomes ledger_transfer_outcome[] := '{}';
begin
    perform set_config('app.tenant_id', tenant::text, true);
    begin
        perform payments_lock_transfer_batch(tenant, from_account_ids, to_account_ids);
        for i in 1 .. items loop
            select * into strict one
              from payments_create_transfer(caller_user_ids[i], callers_are_back_office[i], from_account_ids[i],
                                            to_account_ids[i], amounts_minor[i], currencies[i], actors[i], methods[i],
                                            request_ids[i], request_hashes[i], descriptions[i]);
            outcomes := outcomes || one;
        end loop;
    exception when others then
        outcomes := null;  -- an item was refused: everything above is rolled back; one by one below
    end;
    if outcomes is not null then
        return query select i, null::text, null::text, null::text, outcomes[i] from generate_series(1, items) i;
        return;
    end if;
    perform payments_lock_transfer_batch(tenant, from_account_ids, to_account_ids);
    for i in 1 .. items loop
        begin
            return query
                select i, null::text, null::text, null::text, created
                  from payments_create_transfer(caller_user_ids[i], callers_are_back_office[i], from_account_ids[i],
                                                to_account_ids[i], amounts_minor[i], currencies[i], actors[i], methods[i],
                                                request_ids[i], request_hashes[i], descriptions[i]) created;
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

-- Entry points owned by emoney_ledger. ALTER ... OWNER needs the new owner to hold CREATE on the schema at
-- that moment; it keeps none afterwards. Nothing changes when it owns them already.
grant create on schema public to emoney_ledger;
alter function ledger_post_transfer(text, uuid, uuid, bigint, text, uuid, text, text, text, bytea, text) owner to emoney_ledger;
alter function ledger_refund(uuid, bigint, text, text, text, bytea) owner to emoney_ledger;
alter function payments_create_transfer_in(uuid, uuid, boolean, uuid, uuid, bigint, text, text, text, text, bytea, text)
    owner to emoney_ledger;
alter function payments_create_transfers_in(uuid, uuid[], boolean[], uuid[], uuid[], bigint[], text[], text[], text[],
                                            text[], bytea[], text[])
    owner to emoney_ledger;
revoke create on schema public from emoney_ledger;

grant execute on function
    ledger_transfer_summary(transfers), ledger_transfer_outcome_of(transfers), ledger_transfer_result(boolean, bytea, uuid)
to emoney_app, emoney_ledger;
grant execute on function
    ledger_write_transfer(uuid, uuid, text, accounts, accounts, bigint, text, text, uuid, uuid, uuid, bigint, text),
    ledger_transfer_as_created(ledger_transfer_outcome),
    payments_create_transfer(uuid, boolean, uuid, uuid, bigint, text, text, text, text, bytea, text),
    payments_lock_transfer_batch(uuid, uuid[], uuid[])
to emoney_ledger;  -- only from inside an entry point
grant execute on function
    ledger_post_transfer(text, uuid, uuid, bigint, text, uuid, text, text, text, bytea, text),
    ledger_refund(uuid, bigint, text, text, text, bytea),
    payments_create_transfer_in(uuid, uuid, boolean, uuid, uuid, bigint, text, text, text, text, bytea, text),
    payments_create_transfers_in(uuid, uuid[], boolean[], uuid[], uuid[], bigint[], text[], text[], text[], text[],
                                 bytea[], text[])
to emoney_app;
