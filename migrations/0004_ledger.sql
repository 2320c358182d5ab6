-- 0004: the ledger — accounts, double-entry transfers, two-phase holds, idempotency keys and the
-- hash-chained audit log, with every money movement done by ONE call to a PL/pgSQL function.
--
-- Money is bigint minor units; never a float. Every table keeps `tenant_id` first in its primary key
-- and has row-level security enabled AND forced with the same policy as 0002/0003. The functions are
-- SECURITY INVOKER: they run as the application role, so RLS scopes every statement inside them.
--
-- Balances
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
--   * Single-column rules are domains, tables keep only small cross-column CHECKs: PostgreSQL re-reads
--     and re-plans every table CHECK on each INSERT/UPDATE statement (even for untouched columns), which
--     was ~30% of a transfer; a domain is checked only when its column is written, from the type cache.
--   * Internal helpers are called by assignment, not PERFORM (a PERFORM starts an executor per call),
--     and carry no SET clause (entry points pin search_path; helpers inherit it).
--   Measured on a 2-core VM: ~0.29 ms of server CPU per transfer, including the audit event.
--
-- Failures are raised with SQLSTATEs of the class `EM` this project reserves (ledger_fail below),
-- the message being the stable identifier (INSUFFICIENT_FUNDS ...); storage/ledger.py maps them.

-- ---------------------------------------------------------------------------------------------
-- Limits and rules shared by constraints and functions (mirrored in domain/ledger_rules.py).

create function ledger_max_transfer_minor() returns bigint
    language sql immutable parallel safe
    return 100000000;  -- 1,000,000.00 in a two-decimal currency

create function ledger_max_hold_duration() returns interval
    language sql immutable parallel safe
    return interval '30 days';

create function audit_stripe_count() returns integer
    language sql immutable parallel safe
    return 32;

-- Which account kinds each transfer kind may debit and credit.
create function ledger_kinds_allowed(transfer_kind text, debit_kind text, credit_kind text) returns boolean
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

-- Every business failure, with its SQLSTATE (class EM). The table in storage/ledger.py must match.
create function ledger_fail(failure text, detail jsonb default '{}'::jsonb) returns void
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
            else 'EM000'  -- a programming error (e.g. no tenant set): answered as INTERNAL
        end,
        message = failure,
        detail = detail::text;
end
$$;

create function ledger_tenant_not_set() returns uuid
    language plpgsql
as $$
begin
    perform ledger_fail('TENANT_NOT_SET');
    return null;
end
$$;

-- The transaction's tenant (app.tenant_id, set by the unit of work), or an error: never "all tenants".
create function ledger_current_tenant() returns uuid
    language sql stable
    return coalesce(nullif(current_setting('app.tenant_id', true), '')::uuid, ledger_tenant_not_set());

create function ledger_amount_in_range(amount_minor bigint) returns boolean
    language sql immutable parallel safe
    return coalesce(amount_minor between 1 and ledger_max_transfer_minor(), false);

-- ---------------------------------------------------------------------------------------------
-- Tables
--
-- Single-column rules are DOMAINS, table CHECKs only relate columns to each other. That is for speed,
-- measured: PostgreSQL re-reads and re-plans every table CHECK for each INSERT or UPDATE statement
-- (also the ones on columns the UPDATE leaves alone), which cost ~30% of a transfer; a domain is
-- checked only when a value is written to that column, from the type cache.

create domain iso_currency_code as text check (value ~ '^[A-Z]{3}$');
create domain transfer_amount_minor as bigint check (value between 1 and 100000000);  -- = ledger_max_transfer_minor()
create domain entry_amount_minor as bigint check (value <> 0 and value between -100000000 and 100000000);
create domain overdraft_minor as bigint check (value between 0 and 100000000);
create domain non_negative_minor as bigint check (value >= 0);
create domain shard_count as smallint check (value between 0 and 64);
create domain shard_number as smallint check (value between 0 and 63);
create domain request_id_text as text check (length(value) between 1 and 100);
create domain actor_text as text check (length(value) between 1 and 200);
create domain method_text as text check (length(value) between 1 and 200);
create domain sha256_digest as bytea check (length(value) = 32);
create domain stored_reply as bytea check (length(value) <= 65536);
create domain audit_summary as jsonb check (pg_column_size(value) <= 16384);
create domain account_kind as text check (value in ('customer', 'merchant', 'system_float'));
create domain account_status as text check (value in ('active', 'frozen', 'closed'));
create domain transfer_kind as text check (value in ('p2p', 'payment', 'top_up', 'withdrawal', 'capture', 'refund'));
create domain transfer_status as text check (value in ('completed', 'partially_refunded', 'refunded'));
create domain hold_status as text check (value in ('authorized', 'captured', 'voided', 'expired'));

create table accounts (
    tenant_id             uuid               not null references tenants (tenant_id),
    account_id            uuid               not null default gen_random_uuid(),
    owner_user_id         uuid,
    kind                  account_kind       not null,
    currency              iso_currency_code  not null,
    status                account_status     not null default 'active',
    overdraft_limit_minor overdraft_minor    not null default 0,
    -- Cached balance: exact for an unsharded account; for a sharded one, the part not in its shards.
    balance_minor         bigint             not null default 0,
    held_minor            non_negative_minor not null default 0,
    balance_shards        shard_count        not null default 0,
    created_at            timestamptz        not null default now(),
    updated_at            timestamptz        not null default now(),
    primary key (tenant_id, account_id),
    -- Lets transfers, entries and holds reference (account, currency): currencies match by construction.
    unique (tenant_id, account_id, currency),
    foreign key (tenant_id, owner_user_id) references users (tenant_id, user_id),
    constraint accounts_owner_matches_kind check ((kind = 'system_float') = (owner_user_id is null)),
    -- The no-overdraft rule, on the row every floored debit and every hold goes through. The float
    -- has no floor and takes no holds.
    constraint accounts_no_overdraft check (case when kind = 'system_float' then held_minor = 0
                                                 else balance_minor - held_minor >= -overdraft_limit_minor end),
    constraint accounts_closed_is_empty check (status <> 'closed' or (balance_minor = 0 and held_minor = 0))
) with (fillfactor = 70);  -- room on the page for HOT updates of balances

create unique index accounts_one_float_per_currency on accounts (tenant_id, currency) where kind = 'system_float';
create index accounts_by_creation on accounts (tenant_id, created_at, account_id);
create index accounts_by_owner on accounts (tenant_id, owner_user_id, created_at, account_id)
    where owner_user_id is not null;

create table account_balance_shards (
    tenant_id     uuid         not null,
    account_id    uuid         not null,
    shard         shard_number not null,
    balance_minor bigint       not null default 0,
    primary key (tenant_id, account_id, shard),
    foreign key (tenant_id, account_id) references accounts (tenant_id, account_id)
) with (fillfactor = 50);

create table holds (
    tenant_id           uuid                  not null,
    hold_id             uuid                  not null,
    account_id          uuid                  not null,
    merchant_account_id uuid                  not null,
    terminal_id         uuid,
    currency            iso_currency_code     not null,
    amount_minor        transfer_amount_minor not null,
    captured_minor      non_negative_minor    not null default 0,
    status              hold_status           not null default 'authorized',
    expires_at          timestamptz           not null,
    request_id          request_id_text       not null,
    actor               actor_text            not null,
    created_at          timestamptz           not null default now(),
    resolved_at         timestamptz,
    primary key (tenant_id, hold_id),
    foreign key (tenant_id, account_id, currency) references accounts (tenant_id, account_id, currency),
    foreign key (tenant_id, merchant_account_id, currency) references accounts (tenant_id, account_id, currency),
    foreign key (tenant_id, terminal_id) references terminals (tenant_id, terminal_id),
    check (account_id <> merchant_account_id),
    check (expires_at > created_at and expires_at <= created_at + interval '30 days'),  -- ledger_max_hold_duration()
    check ((status = 'authorized') = (resolved_at is null)),
    check (captured_minor <= amount_minor and (status = 'captured') = (captured_minor > 0))
);
create index holds_due on holds (tenant_id, expires_at) where status = 'authorized';
create index holds_active_by_account on holds (tenant_id, account_id) where status = 'authorized';

create table transfers (
    tenant_id           uuid                  not null,
    transfer_id         uuid                  not null,
    kind                transfer_kind         not null,
    debit_account_id    uuid                  not null,
    credit_account_id   uuid                  not null,
    amount_minor        transfer_amount_minor not null,
    currency            iso_currency_code     not null,
    status              transfer_status       not null default 'completed',
    refunded_minor      non_negative_minor    not null default 0,
    request_id          request_id_text       not null,
    actor               actor_text            not null,
    related_transfer_id uuid,       -- refund -> the payment or capture it reverses
    hold_id             uuid,       -- capture -> the hold it resolves
    terminal_id         uuid,
    created_at          timestamptz           not null default now(),
    primary key (tenant_id, transfer_id),
    foreign key (tenant_id, debit_account_id, currency) references accounts (tenant_id, account_id, currency),
    foreign key (tenant_id, credit_account_id, currency) references accounts (tenant_id, account_id, currency),
    foreign key (tenant_id, related_transfer_id) references transfers (tenant_id, transfer_id),
    foreign key (tenant_id, hold_id) references holds (tenant_id, hold_id),
    foreign key (tenant_id, terminal_id) references terminals (tenant_id, terminal_id),
    constraint transfers_accounts_differ check (debit_account_id <> credit_account_id),
    constraint transfers_links_match_kind check ((kind = 'refund') = (related_transfer_id is not null)
                                                 and (kind = 'capture') = (hold_id is not null)),
    -- Refunds never exceed the payment, only payments and captures are refunded, and the status says how far.
    constraint transfers_refunds_bounded check (refunded_minor <= amount_minor
                                                and (refunded_minor = 0 or kind in ('payment', 'capture'))
                                                and (refunded_minor = 0) = (status = 'completed')
                                                and (refunded_minor = amount_minor) = (status = 'refunded'))
);
create unique index transfers_one_capture_per_hold on transfers (tenant_id, hold_id) where hold_id is not null;
create index transfers_refunds on transfers (tenant_id, related_transfer_id) where related_transfer_id is not null;
-- An account's payments are found through its entries (ledger_entries_statement); a terminal's here.
create index transfers_by_terminal on transfers (tenant_id, terminal_id, created_at) where terminal_id is not null;

-- Append-only. Each transfer writes exactly two entries: -amount on the debit account, +amount on
-- the credit account (reconciliation checks it).
create table ledger_entries (
    tenant_id    uuid               not null,
    transfer_id  uuid               not null,
    entry_id     bigint             not null generated always as identity,
    account_id   uuid               not null,
    amount_minor entry_amount_minor not null,
    currency     iso_currency_code  not null,
    created_at   timestamptz        not null default now(),
    primary key (tenant_id, transfer_id, entry_id),
    foreign key (tenant_id, transfer_id) references transfers (tenant_id, transfer_id),
    foreign key (tenant_id, account_id, currency) references accounts (tenant_id, account_id, currency)
);
-- Statements (ordered by created_at, entry_id), balance at an instant, running balances.
create index ledger_entries_statement on ledger_entries (tenant_id, account_id, created_at, entry_id)
    include (amount_minor);

-- One row per (tenant, caller, request_id), written in the same transaction as the change it guards.
-- A concurrent duplicate's INSERT waits on the first one's uncommitted key, then finds the row.
create table idempotency_keys (
    tenant_id    uuid            not null,
    caller       actor_text      not null,
    request_id   request_id_text not null,
    method       method_text     not null,
    request_hash sha256_digest   not null,
    result_id    uuid            not null,  -- the transfer or hold the request produced
    response     stored_reply,              -- the serialized reply, stored by the service layer
    created_at   timestamptz     not null default now(),
    primary key (tenant_id, caller, request_id)
);

-- Audit: append-only, hash-chained. One chain per (tenant, stripe): a transaction appends to the
-- first stripe nobody holds (SKIP LOCKED), so stripes are never a serialisation point for up to
-- audit_stripe_count() concurrent transactions per tenant; each stripe verifies on its own.
--   hash = sha256(previous_hash || canonical event bytes), the first previous_hash being the stripe's
--   genesis hash; the head row holds the last sequence and hash (so a deleted tail is detected too).
create table audit_chain_heads (
    tenant_id     uuid               not null references tenants (tenant_id),
    stripe        shard_number       not null,
    last_sequence non_negative_minor not null default 0,
    last_hash     sha256_digest      not null,
    previous_hash sha256_digest,     -- the hash last_hash replaced (so one UPDATE yields both)
    primary key (tenant_id, stripe)
) with (fillfactor = 50);

create table audit_events (
    tenant_id     uuid            not null,
    stripe        shard_number    not null,
    sequence      bigint          not null,
    previous_hash sha256_digest   not null,
    hash          sha256_digest   not null,
    actor         actor_text      not null,
    method        method_text     not null,
    request_id    request_id_text not null,
    summary       audit_summary   not null,
    created_at    timestamptz     not null,
    primary key (tenant_id, stripe, sequence),
    foreign key (tenant_id, stripe) references audit_chain_heads (tenant_id, stripe)
);
create index audit_events_by_time on audit_events (tenant_id, created_at);

-- ---------------------------------------------------------------------------------------------
-- Row-level security on every tenant table, same shape as 0002/0003.

do $$
declare
    table_name text;
begin
    foreach table_name in array array['accounts', 'account_balance_shards', 'holds', 'transfers', 'ledger_entries',
                                      'idempotency_keys', 'audit_chain_heads', 'audit_events']
    loop
        execute format('alter table %I enable row level security', table_name);
        execute format('alter table %I force row level security', table_name);
        execute format($policy$
            create policy %I on %I
                using (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
                with check (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
        $policy$, table_name || '_isolation', table_name);
    end loop;
end
$$;

-- The owner reads due holds across tenants for the SECURITY DEFINER lookup below (as it reads
-- terminals in 0003); the application role gets no such policy.
create policy holds_owner_read on holds for select to current_user using (true);

-- ---------------------------------------------------------------------------------------------
-- Append-only, for everyone (defence in depth: the application role has no such privilege anyway).

create function ledger_refuse_change() returns trigger
    language plpgsql
as $$
begin
    raise exception using errcode = '42501', message = format('%s is append-only: %s refused', tg_table_name, tg_op);
end
$$;

create trigger ledger_entries_append_only before update or delete on ledger_entries
    for each row execute function ledger_refuse_change();
create trigger ledger_entries_no_truncate before truncate on ledger_entries
    for each statement execute function ledger_refuse_change();
create trigger audit_events_append_only before update or delete on audit_events
    for each row execute function ledger_refuse_change();
create trigger audit_events_no_truncate before truncate on audit_events
    for each statement execute function ledger_refuse_change();
create trigger transfers_no_delete before delete on transfers
    for each row execute function ledger_refuse_change();
create trigger transfers_no_truncate before truncate on transfers
    for each statement execute function ledger_refuse_change();

-- A transfer's money columns never change; only the refund bookkeeping does.
create function transfers_refuse_immutable_change() returns trigger
    language plpgsql
as $$
begin
    if (new.tenant_id, new.transfer_id, new.kind, new.debit_account_id, new.credit_account_id, new.amount_minor,
        new.currency, new.request_id, new.actor, new.related_transfer_id, new.hold_id, new.terminal_id, new.created_at)
       is distinct from
       (old.tenant_id, old.transfer_id, old.kind, old.debit_account_id, old.credit_account_id, old.amount_minor,
        old.currency, old.request_id, old.actor, old.related_transfer_id, old.hold_id, old.terminal_id, old.created_at)
    then
        raise exception using errcode = '42501', message = 'a transfer''s money columns are immutable';
    end if;
    return new;
end
$$;
create trigger transfers_immutable before update on transfers
    for each row execute function transfers_refuse_immutable_change();

-- A stored reply is written once.
create function idempotency_keys_refuse_overwrite() returns trigger
    language plpgsql
as $$
begin
    raise exception using errcode = '42501', message = 'a stored idempotent reply is never overwritten';
end
$$;
create trigger idempotency_keys_write_once before update on idempotency_keys
    for each row when (old.response is not null) execute function idempotency_keys_refuse_overwrite();

-- ---------------------------------------------------------------------------------------------
-- Grants: exactly what the functions (running as the application role) need. No DELETE anywhere,
-- no UPDATE of entries, audit events or a transfer's money columns.

grant select, insert, update (status, balance_minor, held_minor, updated_at) on accounts to emoney_app;
grant select, insert, update (balance_minor) on account_balance_shards to emoney_app;
grant select, insert, update (status, captured_minor, resolved_at) on holds to emoney_app;
grant select, insert, update (refunded_minor, status) on transfers to emoney_app;
grant select, insert on ledger_entries to emoney_app;
grant select, insert, update (response) on idempotency_keys to emoney_app;
grant select, insert, update (last_sequence, last_hash, previous_hash) on audit_chain_heads to emoney_app;
grant select, insert on audit_events to emoney_app;

-- ---------------------------------------------------------------------------------------------
-- Audit chain

create function audit_genesis_hash(tenant_id uuid, stripe smallint) returns bytea
    language sql immutable parallel safe
    return sha256(convert_to('emoney-audit-genesis:' || tenant_id::text || ':' || stripe::text, 'UTF8'));

-- The canonical bytes of an event: a JSON array of its fields (time as epoch microseconds, so the
-- session's time zone never matters), UTF-8 encoded.
create function audit_event_hash(
    previous_hash bytea, tenant_id uuid, stripe smallint, sequence bigint, created_at timestamptz,
    actor text, method text, request_id text, summary jsonb
) returns bytea
    language sql stable parallel safe
    return sha256(previous_hash || convert_to(
        jsonb_build_array(tenant_id, stripe, sequence, (extract(epoch from created_at) * 1000000)::bigint,
                          actor, method, request_id, summary)::text, 'UTF8'));

-- The stripe this transaction appends to: taken once (the first free one from a random start), then
-- reused until commit, so a transaction holds at most one stripe. Ledger functions take it right
-- after claiming their idempotency key, before any account lock (see the locking order above).
create function audit_acquire_stripe() returns smallint
    language plpgsql
as $$
declare
    tenant uuid := ledger_current_tenant();
    held text := current_setting('emoney.audit_stripe', true);
    stripes integer := audit_stripe_count();
    start_stripe integer;
    chosen smallint;
begin
    if held is not null and held <> '' then
        return held::smallint;
    end if;
    start_stripe := floor(random() * stripes)::integer;
    select h.stripe into chosen
      from audit_chain_heads h
     where h.tenant_id = tenant
     order by (h.stripe - start_stripe + stripes) % stripes
     limit 1
       for no key update skip locked;
    if not found then
        -- The tenant's first event (create its stripes), or every stripe busy (wait for one).
        insert into audit_chain_heads (tenant_id, stripe, last_sequence, last_hash)
        select tenant, s::smallint, 0, audit_genesis_hash(tenant, s::smallint)
          from generate_series(0, stripes - 1) s
            on conflict do nothing;
        select h.stripe into strict chosen
          from audit_chain_heads h
         where h.tenant_id = tenant and h.stripe = start_stripe
           for no key update;
    end if;
    held := set_config('emoney.audit_stripe', chosen::text, true);
    return chosen;
end
$$;

-- Append one event. One statement moves the head and inserts the event; the head row keeps the
-- hash it replaced, so both come from the row this transaction holds.
create function audit_append(
    actor text, method text, request_id text, summary jsonb,
    out stripe smallint, out sequence bigint, out hash bytea, out created_at timestamptz
)
    language plpgsql
    set search_path = pg_catalog, public
as $$
#variable_conflict use_variable
declare
    tenant uuid := ledger_current_tenant();
    chosen smallint := audit_acquire_stripe();
    event_time timestamptz := now();
begin
    with head as (
        update audit_chain_heads h
           set previous_hash = h.last_hash,
               last_sequence = h.last_sequence + 1,
               last_hash = audit_event_hash(h.last_hash, h.tenant_id, h.stripe, h.last_sequence + 1, event_time,
                                            actor, method, request_id, summary)
         where h.tenant_id = tenant and h.stripe = chosen
        returning h.tenant_id, h.stripe, h.last_sequence, h.previous_hash, h.last_hash
    )
    insert into audit_events as e (tenant_id, stripe, sequence, previous_hash, hash, actor, method, request_id,
                                   summary, created_at)
    select head.tenant_id, head.stripe, head.last_sequence, head.previous_hash, head.last_hash, actor, method,
           request_id, summary, event_time
      from head
    returning e.stripe, e.sequence, e.hash, e.created_at into stripe, sequence, hash, created_at;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- Idempotency: claim the key (first) or find what the original call produced.

create function ledger_claim_request(
    caller text, method text, request_id text, request_hash bytea, new_result_id uuid,
    out claimed boolean, out result_id uuid, out stored_response bytea
)
    language plpgsql
    set search_path = pg_catalog, public
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

-- ---------------------------------------------------------------------------------------------
-- Account helpers (internal: no SET clause, they run inside an entry point that has one; a SET
-- clause costs a save/restore of the setting on every call and stops SQL functions being inlined)

create function ledger_status_failure(status text) returns text
    language sql immutable parallel safe
    return case status when 'frozen' then 'ACCOUNT_FROZEN' when 'closed' then 'ACCOUNT_CLOSED' end;

-- Read (without locking) an account a movement will use. Kind, currency and shard count never
-- change; the status is checked again under the lock that the movement itself takes.
create function ledger_usable_account(tenant uuid, wanted_account_id uuid, wanted_currency text) returns accounts
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
create function ledger_lock_account(tenant uuid, wanted_account_id uuid) returns accounts
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
create function ledger_sweep_shards(tenant uuid, swept_account_id uuid, wait boolean) returns bigint
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
create function ledger_try_change_row(tenant uuid, changed_account_id uuid, balance_change bigint, held_change bigint)
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
create function ledger_change_row_slowly(tenant uuid, changed_account_id uuid, balance_change bigint, held_change bigint)
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
create function ledger_change_shard(tenant uuid, changed_account_id uuid, shard_count smallint, balance_change bigint)
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
create function ledger_apply_leg(tenant uuid, account accounts, balance_change bigint, held_change bigint)
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

-- Write a transfer: both legs in account_id order, the transfer row, its two entries.
create function ledger_write_transfer(
    tenant uuid, new_transfer_id uuid, transfer_kind text, debit accounts, credit accounts, amount bigint,
    actor text, request_id text, related_transfer uuid, resolved_hold uuid, terminal uuid, released_held bigint
) returns transfers
    language plpgsql
as $$
#variable_conflict use_variable
declare
    written transfers;
    debit_shard smallint;
    credit_shard smallint;
begin
    -- Assignments, not PERFORM: a PERFORM starts an executor for every call, an assignment does not.
    if debit.account_id < credit.account_id then
        debit_shard := ledger_apply_leg(tenant, debit, -amount, -released_held);
        credit_shard := ledger_apply_leg(tenant, credit, amount, 0);
    else
        credit_shard := ledger_apply_leg(tenant, credit, amount, 0);
        debit_shard := ledger_apply_leg(tenant, debit, -amount, -released_held);
    end if;
    insert into transfers (tenant_id, transfer_id, kind, debit_account_id, credit_account_id, amount_minor, currency,
                           request_id, actor, related_transfer_id, hold_id, terminal_id)
    values (tenant, new_transfer_id, transfer_kind, debit.account_id, credit.account_id, amount, debit.currency,
            request_id, actor, related_transfer, resolved_hold, terminal)
    returning * into written;
    insert into ledger_entries (tenant_id, transfer_id, account_id, amount_minor, currency, created_at)
    values (tenant, new_transfer_id, debit.account_id, -amount, debit.currency, written.created_at),
           (tenant, new_transfer_id, credit.account_id, amount, debit.currency, written.created_at);
    return written;
end
$$;

create function ledger_transfer_summary(transfer transfers) returns jsonb
    language sql immutable parallel safe
    return jsonb_build_object(
        'transferId', transfer.transfer_id, 'kind', transfer.kind, 'debitAccountId', transfer.debit_account_id,
        'creditAccountId', transfer.credit_account_id, 'amountMinor', transfer.amount_minor::text,
        'currency', transfer.currency, 'status', transfer.status, 'refundedMinor', transfer.refunded_minor::text);

create function ledger_hold_summary(hold holds) returns jsonb
    language sql immutable parallel safe
    return jsonb_build_object(
        'holdId', hold.hold_id, 'accountId', hold.account_id, 'merchantAccountId', hold.merchant_account_id,
        'amountMinor', hold.amount_minor::text, 'capturedMinor', hold.captured_minor::text,
        'currency', hold.currency, 'status', hold.status, 'expiresAt', hold.expires_at);

-- ---------------------------------------------------------------------------------------------
-- Result shapes, the same for a first call and its replay (read back by id after the change).

create type ledger_transfer_outcome as (
    replayed boolean, stored_response bytea, transfer_id uuid, kind text, debit_account_id uuid,
    credit_account_id uuid, amount_minor bigint, currency text, status text, refunded_minor bigint,
    request_id text, actor text, related_transfer_id uuid, hold_id uuid, terminal_id uuid, created_at timestamptz
);
create type ledger_hold_outcome as (
    replayed boolean, stored_response bytea, hold_id uuid, account_id uuid, merchant_account_id uuid,
    terminal_id uuid, currency text, amount_minor bigint, captured_minor bigint, status text,
    expires_at timestamptz, request_id text, actor text, created_at timestamptz, resolved_at timestamptz,
    capture_transfer_id uuid
);
create type ledger_account_view as (
    account_id uuid, owner_user_id uuid, kind text, currency text, status text, overdraft_limit_minor bigint,
    balance_minor bigint, held_minor bigint, balance_shards smallint, created_at timestamptz, updated_at timestamptz
);

create function ledger_transfer_outcome_of(transfer transfers) returns ledger_transfer_outcome
    language sql immutable parallel safe
    return row(false, null, transfer.transfer_id, transfer.kind, transfer.debit_account_id, transfer.credit_account_id,
               transfer.amount_minor, transfer.currency, transfer.status, transfer.refunded_minor, transfer.request_id,
               transfer.actor, transfer.related_transfer_id, transfer.hold_id, transfer.terminal_id,
               transfer.created_at)::ledger_transfer_outcome;

create function ledger_transfer_result(is_replay boolean, response bytea, wanted_transfer_id uuid)
    returns setof ledger_transfer_outcome
    language sql stable
as $$
    select is_replay, response, t.transfer_id, t.kind, t.debit_account_id, t.credit_account_id, t.amount_minor,
           t.currency, t.status, t.refunded_minor, t.request_id, t.actor, t.related_transfer_id, t.hold_id,
           t.terminal_id, t.created_at
      from transfers t
     where t.tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid and t.transfer_id = wanted_transfer_id
$$;

create function ledger_hold_result(is_replay boolean, response bytea, wanted_hold_id uuid)
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

-- An account with its ledger balance: the row plus its shards.
create function ledger_account_result(wanted_account_id uuid)
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

-- ---------------------------------------------------------------------------------------------
-- Accounts (entry points: SET search_path, so nothing else on the caller's path is consulted)

-- Open a customer or merchant account, or the tenant's float for a currency (then: returns the
-- existing float if there is one, changing nothing).
create function ledger_open_account(
    new_owner_user_id uuid, new_kind text, new_currency text, new_overdraft_limit_minor bigint,
    new_balance_shards smallint, actor text, method text, request_id text
) returns setof ledger_account_view
    language plpgsql
    set search_path = pg_catalog, public
as $$
#variable_conflict use_column
declare
    audit_stripe smallint;  -- held until commit: taken before any account lock
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
    audit_stripe := audit_acquire_stripe();
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
create function ledger_set_account_status(
    changed_account_id uuid, new_status text, actor text, method text, request_id text
) returns setof ledger_account_view
    language plpgsql
    set search_path = pg_catalog, public
as $$
#variable_conflict use_column
declare
    audit_stripe smallint;  -- held until commit: taken before any account lock
    audit_event record;
    tenant uuid := ledger_current_tenant();
    account accounts;
begin
    if new_status is null or new_status not in ('active', 'frozen', 'closed') then
        raise exception using errcode = '22023', message = 'unknown account status';
    end if;
    audit_stripe := audit_acquire_stripe();
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

-- ---------------------------------------------------------------------------------------------
-- Transfers

create function ledger_post_transfer(
    transfer_kind text, debit_account_id uuid, credit_account_id uuid, amount_minor bigint, currency text,
    terminal_id uuid, actor text, method text, request_id text, request_hash bytea
) returns setof ledger_transfer_outcome
    language plpgsql
    set search_path = pg_catalog, public
as $$
#variable_conflict use_variable
declare
    audit_stripe smallint;  -- held until commit: taken before any account lock
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
    if not ledger_amount_in_range(amount_minor) then
        perform ledger_fail('AMOUNT_OUT_OF_RANGE', jsonb_build_object('maximumMinor', ledger_max_transfer_minor()::text));
    end if;
    if debit_account_id = credit_account_id then
        perform ledger_fail('SAME_ACCOUNT', jsonb_build_object('accountId', debit_account_id));
    end if;
    claim := ledger_claim_request(actor, method, request_id, request_hash, gen_random_uuid());
    if claim.claimed then
        audit_stripe := audit_acquire_stripe();
        debit := ledger_usable_account(tenant, debit_account_id, currency);
        credit := ledger_usable_account(tenant, credit_account_id, currency);
        if not ledger_kinds_allowed(transfer_kind, debit.kind, credit.kind) then
            perform ledger_fail('ACCOUNT_KIND_NOT_ALLOWED', jsonb_build_object(
                'transferKind', transfer_kind, 'debitKind', debit.kind, 'creditKind', credit.kind));
        end if;
        written := ledger_write_transfer(tenant, claim.result_id, transfer_kind, debit, credit, amount_minor,
                                         actor, request_id, null, null, terminal_id, 0);
        audit_event := audit_append(actor, method, request_id,
                             jsonb_build_object('before', null, 'after', ledger_transfer_summary(written)));
        return next ledger_transfer_outcome_of(written);
        return;
    end if;
    return query select * from ledger_transfer_result(true, claim.stored_response, claim.result_id);
end
$$;

-- Refund all or part of a payment (or capture). The payment row is locked, so concurrent refunds
-- of one payment take turns and their total never exceeds what was paid.
create function ledger_refund(
    payment_transfer_id uuid, amount_minor bigint, actor text, method text, request_id text, request_hash bytea
) returns setof ledger_transfer_outcome
    language plpgsql
    set search_path = pg_catalog, public
as $$
#variable_conflict use_variable
declare
    audit_stripe smallint;  -- held until commit: taken before any account lock
    audit_event record;
    tenant uuid := ledger_current_tenant();
    claim record;
    payment transfers;
    merchant accounts;
    customer accounts;
    written transfers;
begin
    if not ledger_amount_in_range(amount_minor) then
        perform ledger_fail('AMOUNT_OUT_OF_RANGE', jsonb_build_object('maximumMinor', ledger_max_transfer_minor()::text));
    end if;
    claim := ledger_claim_request(actor, method, request_id, request_hash, gen_random_uuid());
    if claim.claimed then
        audit_stripe := audit_acquire_stripe();
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
-- Holds (two-phase payments)

create function ledger_authorize_hold(
    payer_account_id uuid, merchant_account_id uuid, terminal_id uuid, amount_minor bigint, currency text,
    expires_at timestamptz, actor text, method text, request_id text, request_hash bytea
) returns setof ledger_hold_outcome
    language plpgsql
    set search_path = pg_catalog, public
as $$
#variable_conflict use_variable
declare
    audit_stripe smallint;  -- held until commit: taken before any account lock
    audit_event record;
    tenant uuid := ledger_current_tenant();
    claim record;
    payer accounts;
    payer_shard smallint;
    merchant accounts;
begin
    if not ledger_amount_in_range(amount_minor) then
        perform ledger_fail('AMOUNT_OUT_OF_RANGE', jsonb_build_object('maximumMinor', ledger_max_transfer_minor()::text));
    end if;
    if payer_account_id = merchant_account_id then
        perform ledger_fail('SAME_ACCOUNT', jsonb_build_object('accountId', payer_account_id));
    end if;
    if expires_at is null or expires_at <= now() or expires_at > now() + ledger_max_hold_duration() then
        perform ledger_fail('EXPIRY_OUT_OF_RANGE', jsonb_build_object('maximumSeconds',
            extract(epoch from ledger_max_hold_duration())::bigint::text));
    end if;
    claim := ledger_claim_request(actor, method, request_id, request_hash, gen_random_uuid());
    if claim.claimed then
        audit_stripe := audit_acquire_stripe();
        payer := ledger_usable_account(tenant, payer_account_id, currency);
        merchant := ledger_usable_account(tenant, merchant_account_id, currency);
        if not ledger_kinds_allowed('capture', payer.kind, merchant.kind) then
            perform ledger_fail('ACCOUNT_KIND_NOT_ALLOWED', jsonb_build_object(
                'transferKind', 'capture', 'debitKind', payer.kind, 'creditKind', merchant.kind));
        end if;
        payer_shard := ledger_apply_leg(tenant, payer, 0, amount_minor);
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

-- Lock a hold that is about to be resolved, refusing one resolved already.
create function ledger_lock_authorized_hold(tenant uuid, wanted_hold_id uuid) returns holds
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

-- Capture all or part of a hold: one transfer for the captured amount; the rest is released.
create function ledger_capture_hold(
    captured_hold_id uuid, amount_minor bigint, actor text, method text, request_id text, request_hash bytea
) returns setof ledger_hold_outcome
    language plpgsql
    set search_path = pg_catalog, public
as $$
#variable_conflict use_variable
declare
    audit_stripe smallint;  -- held until commit: taken before any account lock
    audit_event record;
    tenant uuid := ledger_current_tenant();
    claim record;
    hold holds;
    payer accounts;
    merchant accounts;
    written transfers;
begin
    if not ledger_amount_in_range(amount_minor) then
        perform ledger_fail('AMOUNT_OUT_OF_RANGE', jsonb_build_object('maximumMinor', ledger_max_transfer_minor()::text));
    end if;
    claim := ledger_claim_request(actor, method, request_id, request_hash, captured_hold_id);
    if claim.claimed then
        audit_stripe := audit_acquire_stripe();
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

create function ledger_void_hold(
    voided_hold_id uuid, actor text, method text, request_id text, request_hash bytea
) returns setof ledger_hold_outcome
    language plpgsql
    set search_path = pg_catalog, public
as $$
#variable_conflict use_variable
declare
    audit_stripe smallint;  -- held until commit: taken before any account lock
    audit_event record;
    tenant uuid := ledger_current_tenant();
    claim record;
    hold holds;
begin
    claim := ledger_claim_request(actor, method, request_id, request_hash, voided_hold_id);
    if claim.claimed then
        audit_stripe := audit_acquire_stripe();
        hold := ledger_lock_authorized_hold(tenant, voided_hold_id);
        -- Releasing never lowers the available balance: no status or floor to check.
        update accounts a set held_minor = a.held_minor - hold.amount_minor, updated_at = now()
         where a.tenant_id = tenant and a.account_id = hold.account_id;
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
create function ledger_expire_holds(only_account_id uuid, batch_limit integer) returns integer
    language plpgsql
as $$
declare
    audit_stripe smallint;  -- held until commit: taken before any account lock
    audit_event record;
    tenant uuid := ledger_current_tenant();
    hold holds;
    expired integer := 0;
begin
    audit_stripe := audit_acquire_stripe();
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
create function ledger_expire_due_holds(batch_limit integer)
    returns setof ledger_hold_outcome
    language plpgsql
    set search_path = pg_catalog, public
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

-- Which tenants have holds past their expiry (for the background task, before it knows a tenant).
create function tenants_with_due_holds(tenant_limit integer) returns setof uuid
    language sql stable security definer
    set search_path = pg_catalog, public
as $$
    select distinct h.tenant_id from public.holds h
     where h.status = 'authorized' and h.expires_at <= now()
     limit least(greatest(tenant_limit, 1), 1000)
$$;

-- ---------------------------------------------------------------------------------------------
-- Functions the application role may call. SECURITY INVOKER functions run with its privileges and
-- under RLS; the helpers are called from inside them, so it needs EXECUTE on those too.

grant execute on function
    ledger_max_transfer_minor(), ledger_max_hold_duration(), audit_stripe_count(),
    ledger_amount_in_range(bigint), ledger_kinds_allowed(text, text, text), ledger_fail(text, jsonb),
    ledger_tenant_not_set(), ledger_current_tenant(), audit_genesis_hash(uuid, smallint),
    audit_event_hash(bytea, uuid, smallint, bigint, timestamptz, text, text, text, jsonb),
    audit_acquire_stripe(), audit_append(text, text, text, jsonb),
    ledger_claim_request(text, text, text, bytea, uuid), ledger_status_failure(text),
    ledger_usable_account(uuid, uuid, text), ledger_lock_account(uuid, uuid),
    ledger_sweep_shards(uuid, uuid, boolean), ledger_try_change_row(uuid, uuid, bigint, bigint),
    ledger_change_row_slowly(uuid, uuid, bigint, bigint), ledger_change_shard(uuid, uuid, smallint, bigint),
    ledger_apply_leg(uuid, accounts, bigint, bigint),
    ledger_write_transfer(uuid, uuid, text, accounts, accounts, bigint, text, text, uuid, uuid, uuid, bigint),
    ledger_transfer_summary(transfers), ledger_hold_summary(holds),
    ledger_transfer_outcome_of(transfers), ledger_transfer_result(boolean, bytea, uuid),
    ledger_hold_result(boolean, bytea, uuid),
    ledger_account_result(uuid),
    ledger_open_account(uuid, text, text, bigint, smallint, text, text, text),
    ledger_set_account_status(uuid, text, text, text, text),
    ledger_post_transfer(text, uuid, uuid, bigint, text, uuid, text, text, text, bytea),
    ledger_refund(uuid, bigint, text, text, text, bytea),
    ledger_authorize_hold(uuid, uuid, uuid, bigint, text, timestamptz, text, text, text, bytea),
    ledger_lock_authorized_hold(uuid, uuid),
    ledger_capture_hold(uuid, bigint, text, text, text, bytea),
    ledger_void_hold(uuid, text, text, text, bytea),
    ledger_expire_holds(uuid, integer), ledger_expire_due_holds(integer),
    tenants_with_due_holds(integer)
to emoney_app;
