-- 0003: identity — refresh-token families, payment terminals, and the few
-- SECURITY DEFINER lookups that must work before a tenant is known.

-- Platform administrators are users of one special tenant of kind `platform`.
-- It is invisible to the public directory, so nobody can sign up to it.
alter table tenants add column kind text not null default 'organisation' check (kind in ('organisation', 'platform'));
create unique index tenants_single_platform on tenants (kind) where kind = 'platform';

create or replace function public_tenant_by_slug(requested_slug text)
    returns table (tenant_id uuid, slug text, display_name text, default_currency text)
    language sql stable security definer
    set search_path = pg_catalog, public
as $$
    select t.tenant_id, t.slug, t.display_name, t.default_currency
      from public.tenants t
     where t.slug = requested_slug and t.status = 'active' and t.kind = 'organisation'
$$;

-- Refresh tokens are opaque to clients: `{tenant_id}.{token_id}.{secret}`; only
-- a SHA-256 of the (256-bit random) secret is stored. Every token descends from
-- one login (its family); reuse of a used token revokes the family.
create table refresh_tokens (
    tenant_id    uuid        not null references tenants (tenant_id),
    token_id     uuid        not null,
    family_id    uuid        not null,
    user_id      uuid        not null,
    secret_hash  bytea       not null check (length(secret_hash) = 32),
    status       text        not null default 'active' check (status in ('active', 'used', 'revoked')),
    expires_at   timestamptz not null,
    created_at   timestamptz not null default now(),
    used_at      timestamptz,
    primary key (tenant_id, token_id),
    foreign key (tenant_id, user_id) references users (tenant_id, user_id)
);
create index refresh_tokens_family on refresh_tokens (tenant_id, family_id);
create index refresh_tokens_user on refresh_tokens (tenant_id, user_id) where status = 'active';

alter table refresh_tokens enable row level security;
alter table refresh_tokens force row level security;
create policy refresh_tokens_isolation on refresh_tokens
    using (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
grant select, insert, update on refresh_tokens to emoney_app;

-- Payment terminals. The client secret is 256 random bits, so a SHA-256 of it
-- is enough (nothing to brute-force); the secret itself is shown once.
create table terminals (
    tenant_id        uuid        not null references tenants (tenant_id),
    terminal_id      uuid        not null default gen_random_uuid(),
    merchant_user_id uuid        not null,
    display_name     text        not null check (length(display_name) between 1 and 200),
    client_id        text        not null unique check (client_id ~ '^term_[a-z0-9]{24}$'),
    secret_hash      bytea       not null check (length(secret_hash) = 32),
    status           text        not null default 'active' check (status in ('active', 'disabled')),
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    primary key (tenant_id, terminal_id),
    foreign key (tenant_id, merchant_user_id) references users (tenant_id, user_id)
);

alter table terminals enable row level security;
alter table terminals force row level security;
create policy terminals_isolation on terminals
    using (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
grant select, insert, update on terminals to emoney_app;

-- The owner reads terminals for the pre-login lookup below (as it reads tenants).
create policy terminals_owner_read on terminals for select to current_user using (true);

-- A terminal logs in with only its client id: find its tenant first.
create function terminal_by_client_id(requested_client_id text)
    returns table (tenant_id uuid, terminal_id uuid, secret_hash bytea, status text, tenant_status text)
    language sql stable security definer
    set search_path = pg_catalog, public
as $$
    select t.tenant_id, t.terminal_id, t.secret_hash, t.status, tn.status
      from public.terminals t join public.tenants tn on tn.tenant_id = t.tenant_id
     where t.client_id = requested_client_id
$$;
revoke all on function terminal_by_client_id(text) from public;
grant execute on function terminal_by_client_id(text) to emoney_app;

-- Platform administration needs to find a tenant whatever its status; the
-- application checks the caller is a platform administrator before calling.
create function tenant_by_slug_any_status(requested_slug text)
    returns table (tenant_id uuid, slug text, display_name text, default_currency text, status text,
                   created_at timestamptz, kind text)
    language sql stable security definer
    set search_path = pg_catalog, public
as $$
    select t.tenant_id, t.slug, t.display_name, t.default_currency, t.status, t.created_at, t.kind
      from public.tenants t where t.slug = requested_slug
$$;
revoke all on function tenant_by_slug_any_status(text) from public;
grant execute on function tenant_by_slug_any_status(text) to emoney_app;

create function tenants_page(after_slug text, page_limit integer)
    returns table (tenant_id uuid, slug text, display_name text, default_currency text, status text, created_at timestamptz)
    language sql stable security definer
    set search_path = pg_catalog, public
as $$
    select t.tenant_id, t.slug, t.display_name, t.default_currency, t.status, t.created_at
      from public.tenants t
     where t.slug > coalesce(after_slug, '')
     order by t.slug
     limit least(greatest(page_limit, 1), 101)
$$;
revoke all on function tenants_page(text, integer) from public;
grant execute on function tenants_page(text, integer) to emoney_app;

-- Servers copy suspensions into Redis at start (Redis is where every call checks them).
create function suspended_tenant_ids()
    returns setof uuid
    language sql stable security definer
    set search_path = pg_catalog, public
as $$
    select t.tenant_id from public.tenants t where t.status = 'suspended'
$$;
revoke all on function suspended_tenant_ids() from public;
grant execute on function suspended_tenant_ids() to emoney_app;

-- Tenant status changes go through the application role, scoped to the target tenant.
grant update (status, updated_at) on tenants to emoney_app;
grant insert on tenants to emoney_app;
