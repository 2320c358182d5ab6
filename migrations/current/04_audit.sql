-- The audit log: append-only and hash-chained, written in the same transaction as the change it records.
--
-- One chain per (tenant, stripe): a transaction appends to the first stripe nobody holds (SKIP LOCKED),
-- so stripes are never a serialisation point for up to audit_stripe_count() concurrent transactions per
-- tenant; each stripe verifies on its own (storage/audit.py).
--   hash = sha256(previous_hash || canonical event bytes), the first previous_hash being the stripe's
--   genesis hash; the head row (audit_chain_heads) holds the last sequence and hash, so a deleted tail is
--   detected too.

create or replace function audit_genesis_hash(tenant_id uuid, stripe smallint) returns bytea
    language sql immutable parallel safe
    return sha256(convert_to('emoney-audit-genesis:' || tenant_id::text || ':' || stripe::text, 'UTF8'));

-- The canonical bytes of an event: a JSON array of its fields (time as epoch microseconds, so the
-- session's time zone never matters), UTF-8 encoded.
create or replace function audit_event_hash(
    previous_hash bytea, tenant_id uuid, stripe smallint, sequence bigint, created_at timestamptz,
    actor text, method text, request_id text, summary jsonb
) returns bytea
    language sql stable parallel safe
    return sha256(previous_hash || convert_to(
        jsonb_build_array(tenant_id, stripe, sequence, (extract(epoch from created_at) * 1000000)::bigint,
                          actor, method, request_id, summary)::text, 'UTF8'));

-- The stripe this transaction appends to: taken once (the first free one from a random start), then
-- reused until commit, so a transaction holds at most one stripe. Ledger functions take it right
-- after claiming their idempotency key, before any account lock (the locking order: 08_balances.sql).
create or replace function audit_acquire_stripe() returns smallint
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
-- hash it replaced, so both come from the row this transaction holds. An entry point: the service layer
-- audits the changes it makes itself (users, terminals, tenants) through it, since only emoney_ledger
-- writes the chain.
create or replace function audit_append(
    actor text, method text, request_id text, summary jsonb,
    out stripe smallint, out sequence bigint, out hash bytea, out created_at timestamptz
)
    language plpgsql
    security definer
    set search_path = pg_catalog, public, pg_temp
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

-- Owned by emoney_ledger, the only role that writes the chain (0012). ALTER ... OWNER needs the new owner
-- to hold CREATE on the schema at that moment; it keeps none afterwards. Nothing changes when it owns the
-- function already.
grant create on schema public to emoney_ledger;
alter function audit_append(text, text, text, jsonb) owner to emoney_ledger;
revoke create on schema public from emoney_ledger;

grant execute on function audit_genesis_hash(uuid, smallint),
    audit_event_hash(bytea, uuid, smallint, bigint, timestamptz, text, text, text, jsonb)
to emoney_app, emoney_ledger;
grant execute on function audit_acquire_stripe() to emoney_ledger;  -- only from inside an entry point
grant execute on function audit_append(text, text, text, jsonb) to emoney_app;
