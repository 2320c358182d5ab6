-- Trigger functions that refuse changes, for everyone (defence in depth: the application role has no
-- such privilege anyway). The triggers themselves are schema, in the numbered migrations (0004):
--   ledger_entries, audit_events   append-only (no UPDATE, DELETE, TRUNCATE)
--   transfers                      no DELETE or TRUNCATE; only the refund bookkeeping columns change
--   idempotency_keys               a stored reply is written once
-- Triggers fire whoever runs the statement: no role needs EXECUTE on these.

create or replace function ledger_refuse_change() returns trigger
    language plpgsql
as $$
begin
    raise exception using errcode = '42501', message = format('%s is append-only: %s refused', tg_table_name, tg_op);
end
$$;

-- A transfer's money columns (and the transaction id its receipt is found by) never change; only the
-- refund bookkeeping does.
create or replace function transfers_refuse_immutable_change() returns trigger
    language plpgsql
as $$
begin
    if (new.tenant_id, new.transfer_id, new.kind, new.debit_account_id, new.credit_account_id, new.amount_minor,
        new.currency, new.request_id, new.actor, new.related_transfer_id, new.hold_id, new.terminal_id, new.created_at,
        new.created_xid)
       is distinct from
       (old.tenant_id, old.transfer_id, old.kind, old.debit_account_id, old.credit_account_id, old.amount_minor,
        old.currency, old.request_id, old.actor, old.related_transfer_id, old.hold_id, old.terminal_id, old.created_at,
        old.created_xid)
    then
        raise exception using errcode = '42501', message = 'a transfer''s money columns are immutable';
    end if;
    return new;
end
$$;

-- A stored reply is written once.
create or replace function idempotency_keys_refuse_overwrite() returns trigger
    language plpgsql
as $$
begin
    raise exception using errcode = '42501', message = 'a stored idempotent reply is never overwritten';
end
$$;
