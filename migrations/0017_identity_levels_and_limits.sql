-- 0017: identity levels and the value limits e-money runs under; days counted in the tenant's time zone.
--
-- A tenant defines levels (identity_levels: e.g. unverified < basic < full, ordered by rank) and, per level
-- and currency, the limits of a customer at that level (level_limits; a null limit is no limit). A customer
-- (users.level_code) with no level assigned is at the tenant's lowest-ranked level; a tenant without levels
-- has no limits. What a customer sent and received is counted per day of the tenant's time zone
-- (limit_usage, written only by the ledger's functions, current/13_limits.sql); a month is the sum of its
-- days. A terminal may have a daily charge limit (terminals.daily_charge_limit_minor), counted in the same
-- table under its own subject.

alter table tenants add column time_zone text not null default 'UTC' check (length(time_zone) between 1 and 64);

create table identity_levels (
    tenant_id    uuid        not null references tenants (tenant_id),
    level_code   text        not null check (level_code ~ '^[a-z][a-z0-9_]{0,31}$'),
    display_name text        not null check (length(display_name) between 1 and 100),
    rank         smallint    not null check (rank between 0 and 1000),
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    primary key (tenant_id, level_code),
    unique (tenant_id, rank)
);

create table level_limits (
    tenant_id              uuid              not null,
    level_code             text              not null,
    currency               iso_currency_code not null references currencies (code),
    max_balance_minor      bigint            check (max_balance_minor >= 0),
    max_payment_minor      bigint            check (max_payment_minor >= 0),
    daily_sent_minor       bigint            check (daily_sent_minor >= 0),
    daily_received_minor   bigint            check (daily_received_minor >= 0),
    monthly_sent_minor     bigint            check (monthly_sent_minor >= 0),
    monthly_received_minor bigint            check (monthly_received_minor >= 0),
    primary key (tenant_id, level_code, currency),
    foreign key (tenant_id, level_code) references identity_levels (tenant_id, level_code) on delete cascade
);

alter table users add column level_code text;
alter table users add constraint users_level_exists
    foreign key (tenant_id, level_code) references identity_levels (tenant_id, level_code);

alter table terminals add column daily_charge_limit_minor bigint check (daily_charge_limit_minor >= 0);

-- subject: 'users/<id>' (a customer: sent and received) or 'terminals/<id>' (received = charged).
create table limit_usage (
    tenant_id      uuid              not null references tenants (tenant_id),
    subject        text              not null check (subject ~ '^(users|terminals)/[0-9a-f-]{36}$'),
    currency       iso_currency_code not null,
    day            date              not null,
    sent_minor     bigint            not null default 0 check (sent_minor >= 0),
    received_minor bigint            not null default 0 check (received_minor >= 0),
    primary key (tenant_id, subject, currency, day)
);

alter table identity_levels enable row level security;
alter table identity_levels force row level security;
create policy identity_levels_isolation on identity_levels
    using (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
alter table level_limits enable row level security;
alter table level_limits force row level security;
create policy level_limits_isolation on level_limits
    using (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
alter table limit_usage enable row level security;
alter table limit_usage force row level security;
create policy limit_usage_isolation on limit_usage
    using (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);

-- Levels and limits are the tenant's configuration, written by the back office; the usage is money's
-- shadow, written only by the ledger's functions.
grant select, insert, update, delete on identity_levels, level_limits to emoney_app;
grant select on limit_usage to emoney_app;
grant select on identity_levels, level_limits to emoney_ledger;
grant select, insert, update on limit_usage to emoney_ledger;
grant update (time_zone) on tenants to emoney_app;
