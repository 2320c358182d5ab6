"""Row-level security: the application role sees only the tenant set in its transaction."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from localstack import provisioning


def _create_tenant_with_user(owner_dsn: str, slug: str) -> uuid.UUID:
    tenant_id = uuid.uuid4()
    with psycopg.connect(owner_dsn) as connection:
        connection.execute("select set_config('app.tenant_id', %s, true)", (str(tenant_id),))
        connection.execute(
            "insert into tenants (tenant_id, slug, display_name, default_currency) values (%s, %s, %s, 'EUR')",
            (tenant_id, slug, slug.title()),
        )
        connection.execute(
            "insert into users (tenant_id, email, display_name) values (%s, %s, 'Someone')",
            (tenant_id, f"someone@{slug}.example"),
        )
    return tenant_id


@pytest.fixture(scope="module")
def two_tenants(owner_dsn):
    suffix = uuid.uuid4().hex[:8]
    return (
        _create_tenant_with_user(owner_dsn, f"alpha-{suffix}"),
        _create_tenant_with_user(owner_dsn, f"beta-{suffix}"),
    )


def _visible_user_tenants(app_dsn: str, tenant_id: str) -> set[uuid.UUID]:
    with psycopg.connect(app_dsn) as connection:
        connection.execute("select set_config('app.tenant_id', %s, true)", (tenant_id,))
        return {row[0] for row in connection.execute("select tenant_id from users")}


def test_app_role_sees_only_its_tenants_users(app_dsn, two_tenants):
    """With tenant A set, even an unfiltered SELECT returns only tenant A's users."""
    alpha, beta = two_tenants
    assert _visible_user_tenants(app_dsn, str(alpha)) == {alpha}
    assert _visible_user_tenants(app_dsn, str(beta)) == {beta}


def test_without_a_tenant_the_app_role_sees_nothing(app_dsn, two_tenants):
    """A transaction that never set app.tenant_id reads no tenant rows at all."""
    assert _visible_user_tenants(app_dsn, "") == set()
    with psycopg.connect(app_dsn) as connection:
        assert connection.execute("select count(*) from tenants").fetchone()[0] == 0


def test_app_role_cannot_write_into_another_tenant(app_dsn, two_tenants):
    """Inserting a row for tenant B while scoped to tenant A is refused by the RLS check."""
    alpha, beta = two_tenants
    with psycopg.connect(app_dsn) as connection:
        connection.execute("select set_config('app.tenant_id', %s, true)", (str(alpha),))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute(
                "insert into users (tenant_id, email, display_name) values (%s, 'intruder@x.example', 'Intruder')",
                (beta,),
            )


def test_app_role_cannot_update_another_tenants_rows(app_dsn, two_tenants):
    """An UPDATE without a tenant filter touches only the current tenant's rows."""
    alpha, _ = two_tenants
    with psycopg.connect(app_dsn) as connection:
        connection.execute("select set_config('app.tenant_id', %s, true)", (str(alpha),))
        updated = connection.execute("update users set display_name = display_name").rowcount
        connection.rollback()
    assert updated == 1


def test_every_tenant_table_forces_rls_and_is_not_owned_by_the_app_role(owner_dsn):
    """Catalog check: each table with a tenant_id column has RLS enabled and forced; emoney_app owns none."""
    with psycopg.connect(owner_dsn) as connection:
        rows = connection.execute(
            """
            select c.relname, c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner)
              from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where n.nspname = 'public' and c.relkind in ('r', 'p')
               and exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped)
            """
        ).fetchall()
        owned_by_app = connection.execute(
            "select count(*) from pg_class where relowner = (select oid from pg_roles where rolname = 'emoney_app')"
        ).fetchone()[0]
    assert {row[0] for row in rows} >= {"tenants", "users"}
    for name, enabled, forced, owner in rows:
        assert enabled and forced, f"{name} must have RLS enabled and forced"
        assert owner != provisioning.APP_ROLE
    assert owned_by_app == 0


def test_app_role_has_no_way_around_rls(owner_dsn):
    """emoney_app is no superuser, has no BYPASSRLS and cannot create roles or databases."""
    with psycopg.connect(owner_dsn) as connection:
        row = connection.execute(
            "select rolsuper, rolbypassrls, rolcreaterole, rolcreatedb from pg_roles where rolname = 'emoney_app'"
        ).fetchone()
    assert row == (False, False, False, False)


def test_public_directory_lookup_works_without_a_tenant(app_dsn, two_tenants):
    """The SECURITY DEFINER lookup resolves an active tenant's slug before login, and only public fields."""
    with psycopg.connect(app_dsn) as connection:
        rows = connection.execute("select * from public_tenant_by_slug('demo-city')").fetchall()
        columns = [column.name for column in connection.execute("select * from public_tenant_by_slug('x')").description]
    assert len(rows) == 1
    assert columns == ["tenant_id", "slug", "display_name", "default_currency"]
