-- 0002: tenants and their users, isolated per tenant by row-level security.
--
-- Every tenant table keeps `tenant_id` in its primary key (so the schema can be
-- sharded on it later) and has RLS enabled AND forced, with policies that read
-- the tenant from the transaction-local setting `app.tenant_id`. A transaction
-- that never set it sees nothing: `nullif(..., '')` turns the unset value into
-- NULL and `tenant_id = NULL` matches no row.

create table tenants (
    tenant_id        uuid        primary key default gen_random_uuid(),
    slug             text        not null unique
                                 check (slug ~ '^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$' and slug !~ '--'),
    display_name     text        not null check (length(display_name) between 1 and 200),
    default_currency text        not null check (default_currency ~ '^[A-Z]{3}$'),
    status           text        not null default 'active' check (status in ('active', 'suspended')),
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now()
);

alter table tenants enable row level security;
alter table tenants force row level security;

create policy tenants_isolation on tenants
    using (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);

-- The owner reads the whole directory so that the SECURITY DEFINER lookup below
-- can resolve a slug before anyone has logged in. The application role gets no
-- such policy.
create policy tenants_directory_owner_read on tenants for select to current_user using (true);

grant select on tenants to emoney_app;

-- Public profile of an active tenant, by slug: the only cross-tenant read the
-- application may make, and it returns public fields only.
create function public_tenant_by_slug(requested_slug text)
    returns table (tenant_id uuid, slug text, display_name text, default_currency text)
    language sql stable security definer
    set search_path = pg_catalog, public
as $$
    select t.tenant_id, t.slug, t.display_name, t.default_currency
      from public.tenants t
     where t.slug = requested_slug and t.status = 'active'
$$;
revoke all on function public_tenant_by_slug(text) from public;
grant execute on function public_tenant_by_slug(text) to emoney_app;

create table users (
    tenant_id     uuid        not null references tenants (tenant_id),
    user_id       uuid        not null default gen_random_uuid(),
    email         text        not null check (length(email) between 3 and 254 and email = lower(email)
                                              and email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    display_name  text        not null check (length(display_name) between 1 and 200),
    -- Argon2id hash in PHC string format; NULL for users who cannot log in with a password.
    password_hash text        check (password_hash is null or password_hash like '$argon2id$%'),
    roles         text[]      not null default array['customer']
                              check (cardinality(roles) between 1 and 5
                                     and roles <@ array['customer', 'merchant', 'operator', 'tenant_admin', 'platform_admin']),
    status        text        not null default 'active' check (status in ('active', 'disabled')),
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    primary key (tenant_id, user_id),
    unique (tenant_id, email)
);

alter table users enable row level security;
alter table users force row level security;

create policy users_isolation on users
    using (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);

grant select, insert, update on users to emoney_app;
