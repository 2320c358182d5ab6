-- Identity levels' value limits (migration 0017): counted and enforced inside the movement that uses them.
--
-- Every movement counts what it uses in limit_usage, one row per (subject, currency, day of the tenant's
-- time zone), with INSERT ... ON CONFLICT DO UPDATE: the row is locked until commit, so concurrent
-- movements of one customer take turns on it and each sees the total of those committed before it —
-- of 20 simultaneous payments, exactly those that fit succeed. A refused movement raises, so nothing of it
-- is counted or applied. Counting happens only where a limit exists (a level with limits in the currency,
-- or a terminal with a daily charge limit): a tenant without limits pays one index probe per movement.
--
-- What counts (the callers, 10_movements.sql, 11_holds.sql, 12_payment_codes.sql):
--   sent      a customer's debit: p2p, payment, withdrawal; a hold when it is made (its release — void,
--             expiry, or the part a capture leaves — gives it back to the day it was counted in; the
--             capture itself is not counted again). A refund is not counted as sent by anyone.
--   received  a customer's credit: p2p, top-up, a capture or payment to them; not a refund (money coming
--             back is not new money received, and a refund must never be refused for a limit).
--   balance   after a counted credit, the customer's balance in that currency (all their accounts).
--   charged   a terminal's payments and holds (received, under its own subject).

-- The day `at` falls on in the tenant's time zone.
create or replace function ledger_limit_day(tenant uuid, at timestamptz) returns date
    language sql stable
    return (at at time zone coalesce((select t.time_zone from tenants t where t.tenant_id = tenant), 'UTC'))::date;

-- A customer's limits in a currency: their level's (or the tenant's lowest level's), or null. PL/pgSQL, not
-- SQL, so that its plans are cached for the session; a tenant without limits costs one index probe.
create or replace function ledger_customer_limits(tenant uuid, customer uuid, wanted_currency text) returns level_limits
    language plpgsql stable
as $$
#variable_conflict use_variable
declare
    found_limits level_limits;
begin
    if not exists (select 1 from level_limits l where l.tenant_id = tenant) then
        return null;
    end if;
    select l.* into found_limits
      from users u
      join level_limits l on l.tenant_id = u.tenant_id and l.currency = wanted_currency
       and l.level_code = coalesce(u.level_code, (select v.level_code from identity_levels v
                                                   where v.tenant_id = tenant order by v.rank limit 1))
     where u.tenant_id = tenant and u.user_id = customer;
    return found_limits;
end
$$;

-- What a customer holds in a currency over all their customer accounts: the balance limit's measure (also
-- what GetLimits reports as left below it, storage/limits.py).
create or replace function ledger_customer_balance(tenant uuid, customer uuid, wanted_currency text) returns bigint
    language sql stable
    return (select coalesce(sum(a.balance_minor), 0)::bigint from accounts a
             where a.tenant_id = tenant and a.owner_user_id = customer and a.currency = wanted_currency
               and a.kind = 'customer');

-- Add `amount` (negative: give back) to one subject's day, then refuse when a limit is passed. The refusal
-- names the limit: MAX_PAYMENT, DAILY_SENT, DAILY_RECEIVED, MONTHLY_SENT, MONTHLY_RECEIVED, MAX_BALANCE or
-- TERMINAL_DAILY_CHARGE, with its amount and what was left of it before this movement.
create or replace function ledger_count_usage(
    tenant uuid, counted_subject text, counted_currency text, direction text, amount bigint, counted_at timestamptz,
    single_limit bigint, daily_limit bigint, monthly_limit bigint
) returns void
    language plpgsql
as $$
#variable_conflict use_variable
declare
    counted_day date := ledger_limit_day(tenant, counted_at);
    day_total bigint;
    month_total bigint;
begin
    if amount > 0 and single_limit is not null and amount > single_limit then
        perform ledger_limit_exceeded('MAX_PAYMENT', counted_currency, single_limit, single_limit);
    end if;
    insert into limit_usage as u (tenant_id, subject, currency, day, sent_minor, received_minor)
    values (tenant, counted_subject, counted_currency, counted_day,
            case when direction = 'sent' then greatest(amount, 0) else 0 end,
            case when direction = 'received' then greatest(amount, 0) else 0 end)
    on conflict (tenant_id, subject, currency, day) do update
       set sent_minor = greatest(u.sent_minor + case when direction = 'sent' then amount else 0 end, 0),
           received_minor = greatest(u.received_minor + case when direction = 'received' then amount else 0 end, 0)
    returning case when direction = 'sent' then u.sent_minor else u.received_minor end into day_total;
    if amount <= 0 then
        return;
    end if;
    if daily_limit is not null and day_total > daily_limit then
        perform ledger_limit_exceeded(case when counted_subject like 'terminals/%' then 'TERMINAL_DAILY_CHARGE'
                                           else 'DAILY_' || upper(direction) end, counted_currency, daily_limit,
                                      daily_limit - (day_total - amount));
    end if;
    if monthly_limit is not null then
        select sum(case when direction = 'sent' then u.sent_minor else u.received_minor end) into month_total
          from limit_usage u
         where u.tenant_id = tenant and u.subject = counted_subject and u.currency = counted_currency
           and u.day >= date_trunc('month', counted_day)::date and u.day <= counted_day;
        if month_total > monthly_limit then
            perform ledger_limit_exceeded('MONTHLY_' || upper(direction), counted_currency, monthly_limit,
                                          monthly_limit - (month_total - amount));
        end if;
    end if;
end
$$;

create or replace function ledger_limit_exceeded(which text, currency text, limit_minor bigint, remaining_minor bigint)
    returns void
    language plpgsql
as $$
begin
    perform ledger_fail('LIMIT_EXCEEDED', jsonb_build_object(
        'limit', which, 'currency', currency, 'limitMinor', limit_minor::text,
        'remainingMinor', greatest(remaining_minor, 0)::text));
end
$$;

-- Count a customer's leg (`amount` sent or received; negative gives back), and after a credit check the
-- balance limit. Accounts that are not a customer's, and customers without limits in the currency, pass.
create or replace function ledger_count_customer(
    tenant uuid, account accounts, direction text, amount bigint, counted_at timestamptz
) returns void
    language plpgsql
as $$
#variable_conflict use_variable
declare
    limits level_limits;
    balance bigint;
begin
    if account.kind <> 'customer' or amount = 0 then
        return;
    end if;
    limits := ledger_customer_limits(tenant, account.owner_user_id, account.currency);
    if limits.tenant_id is null then
        return;
    end if;
    if direction = 'sent' then
        perform ledger_count_usage(tenant, 'users/' || account.owner_user_id, account.currency, direction, amount,
                                   counted_at, limits.max_payment_minor, limits.daily_sent_minor, limits.monthly_sent_minor);
        return;
    end if;
    perform ledger_count_usage(tenant, 'users/' || account.owner_user_id, account.currency, direction, amount,
                               counted_at, null, limits.daily_received_minor, limits.monthly_received_minor);
    if amount > 0 and limits.max_balance_minor is not null then
        balance := ledger_customer_balance(tenant, account.owner_user_id, account.currency);
        if balance > limits.max_balance_minor then
            perform ledger_limit_exceeded('MAX_BALANCE', account.currency, limits.max_balance_minor,
                                          limits.max_balance_minor - (balance - amount));
        end if;
    end if;
end
$$;

-- Count a terminal's charge (negative gives back) against its daily charge limit, if it has one.
create or replace function ledger_count_terminal(
    tenant uuid, charging_terminal uuid, counted_currency text, amount bigint, counted_at timestamptz
) returns void
    language plpgsql
as $$
#variable_conflict use_variable
declare
    daily_limit bigint;
begin
    if charging_terminal is null or amount = 0 then
        return;
    end if;
    select t.daily_charge_limit_minor into daily_limit from terminals t
     where t.tenant_id = tenant and t.terminal_id = charging_terminal;
    if daily_limit is null then
        return;
    end if;
    perform ledger_count_usage(tenant, 'terminals/' || charging_terminal, counted_currency, 'received', amount,
                               counted_at, null, daily_limit, null);
end
$$;

-- A hold released (voided, expired, or what a capture left): give back what it counted when it was made.
create or replace function ledger_release_hold_limits(tenant uuid, hold holds, released bigint) returns void
    language plpgsql
as $$
#variable_conflict use_variable
declare
    payer accounts;
begin
    if released <= 0 then
        return;
    end if;
    select * into payer from accounts a where a.tenant_id = tenant and a.account_id = hold.account_id;
    perform ledger_count_customer(tenant, payer, 'sent', -released, hold.created_at);
    perform ledger_count_terminal(tenant, hold.terminal_id, hold.currency, -released, hold.created_at);
end
$$;

-- What a customer (or terminal) has used in a currency: today and this month, in the tenant's time zone.
create or replace function limits_usage_of(wanted_subject text, wanted_currency text)
    returns table (day_sent bigint, day_received bigint, month_sent bigint, month_received bigint)
    language sql stable
as $$
    select coalesce(sum(u.sent_minor) filter (where u.day = today.day), 0)::bigint,
           coalesce(sum(u.received_minor) filter (where u.day = today.day), 0)::bigint,
           coalesce(sum(u.sent_minor), 0)::bigint, coalesce(sum(u.received_minor), 0)::bigint
      from (select ledger_limit_day(ledger_current_tenant(), now()) as day) today
      left join limit_usage u
        on u.tenant_id = ledger_current_tenant() and u.subject = wanted_subject and u.currency = wanted_currency
       and u.day >= date_trunc('month', today.day)::date and u.day <= today.day
$$;

grant execute on function
    ledger_limit_day(uuid, timestamptz), ledger_customer_limits(uuid, uuid, text), ledger_customer_balance(uuid, uuid, text),
    ledger_count_usage(uuid, text, text, text, bigint, timestamptz, bigint, bigint, bigint),
    ledger_limit_exceeded(text, text, bigint, bigint), ledger_count_customer(uuid, accounts, text, bigint, timestamptz),
    ledger_count_terminal(uuid, uuid, text, bigint, timestamptz), ledger_release_hold_limits(uuid, holds, bigint)
to emoney_ledger;
grant execute on function limits_usage_of(text, text), ledger_limit_day(uuid, timestamptz),
    ledger_customer_balance(uuid, uuid, text)
to emoney_app;
