-- 0005: one-time payment codes (shown as a QR by the citizen's app, redeemed by a terminal).
--
-- Only a SHA-256 of the code is stored (the code is 80 random bits, shown once). A code is used at
-- most once: the redeeming transaction locks the row, checks it is unused and unexpired, and records
-- which caller and request used it, in the same transaction as the payment or hold it pays for.
create table payment_codes (
    tenant_id          uuid        not null references tenants (tenant_id),
    code_hash          bytea       not null check (length(code_hash) = 32),
    account_id         uuid        not null,
    currency           text        not null,
    max_amount_minor   bigint      not null check (max_amount_minor between 1 and ledger_max_transfer_minor()),
    expires_at         timestamptz not null,
    created_by         text        not null check (length(created_by) between 1 and 200),
    created_at         timestamptz not null default now(),
    used_at            timestamptz,
    used_by            text        check (length(used_by) between 1 and 200),
    used_request_id    text        check (length(used_request_id) between 1 and 100),
    used_for           uuid,       -- the transfer or hold it paid for
    primary key (tenant_id, code_hash),
    foreign key (tenant_id, account_id, currency) references accounts (tenant_id, account_id, currency),
    check (expires_at > created_at and expires_at <= created_at + interval '10 minutes'),
    check ((used_at is null) = (used_by is null) and (used_at is null) = (used_request_id is null))
);

alter table payment_codes enable row level security;
alter table payment_codes force row level security;
create policy payment_codes_isolation on payment_codes
    using (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
grant select, insert on payment_codes to emoney_app;
grant update (used_at, used_by, used_request_id, used_for) on payment_codes to emoney_app;
