-- 0020: statements people can keep (issue 15, item 3) — a period of an account exported as CSV or PDF, in
-- the tenant's language, stored in the object store under the tenant's prefix.
--
-- An export is a job: ExportStatement inserts a row, and a background worker in every server process
-- (server/services/statements.py) claims pending rows with FOR UPDATE SKIP LOCKED, writes the document a
-- page of entries at a time (`entries_done` is the progress a client polls), uploads it, and records its
-- key, size and SHA-256. A claim older than a minute is taken over by another worker (its process died),
-- so no export is left running for ever and none runs inside a request's deadline.

alter table tenants add column language text not null default 'en' check (language in ('en', 'pt-BR'));
grant update (language) on tenants to emoney_app;

create table statement_exports (
    tenant_id     uuid        not null references tenants (tenant_id),
    export_id     uuid        not null default gen_random_uuid(),
    account_id    uuid        not null,
    requested_by  text        not null check (length(requested_by) between 1 and 200),
    start_time    timestamptz not null,
    end_time      timestamptz not null,
    format        text        not null check (format in ('csv', 'pdf')),
    language      text        not null check (language in ('en', 'pt-BR')),
    time_zone     text        not null check (length(time_zone) between 1 and 64),
    state         text        not null default 'pending' check (state in ('pending', 'running', 'succeeded', 'failed')),
    entries_total integer     not null check (entries_total >= 0),
    entries_done  integer     not null default 0 check (entries_done >= 0),
    object_key    text,
    size_bytes    bigint,
    sha256        bytea,
    error         text,
    claimed_at    timestamptz,
    created_at    timestamptz not null default now(),
    finished_at   timestamptz,
    primary key (tenant_id, export_id),
    foreign key (tenant_id, account_id) references accounts (tenant_id, account_id),
    check (end_time > start_time),
    check ((state = 'succeeded') = (object_key is not null))
);
create index statement_exports_pending on statement_exports (tenant_id, created_at) where state in ('pending', 'running');

alter table statement_exports enable row level security;
alter table statement_exports force row level security;
create policy statement_exports_isolation on statement_exports
    using (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
-- The owner finds tenants with work to do before it knows a tenant (tenants_with_pending_exports).
create policy statement_exports_owner_read on statement_exports for select to current_user using (true);
grant select, insert, update on statement_exports to emoney_app;
