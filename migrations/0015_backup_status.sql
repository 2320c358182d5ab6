-- 0015: what the backup agent last did, where every server can see it.
--
-- The agent that ships WAL and takes base backups (localstack/backup.py BackupAgent) writes this one row
-- after each pass; every server reads it with its health probes and reports it as the health service
-- `emoney.backups` and the `emoney_backup_*` metrics (server/health.py). A failing backup never makes a
-- server NOT_SERVING for payments: they go on while the object store is away, and the operator sees it.
--
-- UNLOGGED: a heartbeat every few seconds must not write WAL (on an idle database it would make the
-- archiver ship a segment every archive_timeout). The row is not in backups and not on standbys: after
-- a crash or a failover the next pass writes it again, and until then the servers say the agent is not
-- heard from. Platform-wide, no tenant_id: the application role reads it, only the agent (superuser) writes.
create unlogged table backup_status (
    singleton              boolean     primary key default true check (singleton),
    checked_at             timestamptz not null,
    -- The last pass that shipped the spool (and took a base backup if one was due) without an error.
    last_success_at        timestamptz,
    last_base_backup_at    timestamptz,
    last_base_backup_label text        check (length(last_base_backup_label) <= 200),
    last_error             text        check (length(last_error) <= 2000),
    -- WAL segments archived by PostgreSQL into the spool and not yet in the object store.
    wal_backlog            integer     not null default 0 check (wal_backlog >= 0)
);

grant select on backup_status to emoney_app;
