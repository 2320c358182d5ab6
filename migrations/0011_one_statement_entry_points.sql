-- Entry points that take the tenant as their first argument and set `app.tenant_id` themselves, so a
-- money movement is ONE statement on an autocommit connection: its own transaction, committed when
-- it returns — one round trip, sent with the extended protocol as a prepared statement. (0007/0008
-- sent set_config + the call + COMMIT as a psycopg pipeline; waiting for a pipeline's results costs
-- the client a busy loop, about 15 % of a server's CPU under load — issue #6.)
-- The app role may call set_config anyway; these add no privilege. RLS reads the setting in every
-- statement the called function runs.

create function payments_create_transfer_in(
    tenant uuid, caller_user_id uuid, caller_is_back_office boolean, from_account_id uuid, to_account_id uuid,
    amount_minor bigint, currency text, actor text, method text, request_id text, request_hash bytea
) returns setof ledger_transfer_outcome
    language plpgsql
    set search_path = pg_catalog, public
as $$
begin
    perform set_config('app.tenant_id', tenant::text, true);
    return query select * from payments_create_transfer(caller_user_id, caller_is_back_office, from_account_id,
        to_account_id, amount_minor, currency, actor, method, request_id, request_hash);
end
$$;

create function payments_charge_code_in(
    tenant uuid, code_hash bytea, terminal_id uuid, amount_minor bigint, currency text,
    actor text, method text, request_id text, request_hash bytea
) returns setof ledger_transfer_outcome
    language plpgsql
    set search_path = pg_catalog, public
as $$
begin
    perform set_config('app.tenant_id', tenant::text, true);
    return query select * from payments_charge_code(code_hash, terminal_id, amount_minor, currency,
        actor, method, request_id, request_hash);
end
$$;

create function payments_authorize_code_in(
    tenant uuid, code_hash bytea, terminal_id uuid, amount_minor bigint, currency text, expires_at timestamptz,
    actor text, method text, request_id text, request_hash bytea
) returns setof ledger_hold_outcome
    language plpgsql
    set search_path = pg_catalog, public
as $$
begin
    perform set_config('app.tenant_id', tenant::text, true);
    return query select * from payments_authorize_code(code_hash, terminal_id, amount_minor, currency, expires_at,
        actor, method, request_id, request_hash);
end
$$;

grant execute on function
    payments_create_transfer_in(uuid, uuid, boolean, uuid, uuid, bigint, text, text, text, text, bytea),
    payments_charge_code_in(uuid, bytea, uuid, bigint, text, text, text, text, bytea),
    payments_authorize_code_in(uuid, bytea, uuid, bigint, text, timestamptz, text, text, text, bytea)
to emoney_app;
