-- 0014: money is held only in currencies that exist.
--
-- Until now any three capital letters passed (`ABC`, `XXX`). The currencies are ISO 4217's, each with
-- its number of minor units (JPY 0, EUR 2, BHD 3): storage/migrate.py fills this table from the
-- `iso4217` package on every run, the same list the service layer checks (domain/currencies.py). Codes
-- ISO lists without minor units (precious metals, XTS, XXX, ...) are not money a wallet holds and are
-- not in it. A code is never removed by a later run: accounts held in a currency ISO withdraws stay
-- valid (the service no longer opens new ones).
--
-- Reference data of the platform, the same for every tenant: no tenant_id, no row-level security.
-- Nobody but the owner (migrations) needs to read it: the foreign keys below are checked with the
-- owner's rights.
create table currencies (
    code        text     primary key check (code ~ '^[A-Z]{3}$'),
    -- Decimals of the currency. ISO 4217 has 0 to 4 today; more would need the amount limits
    -- (ledger_max_transfer_minor) rethought, so a larger one fails the migration run that brings it.
    minor_units smallint not null check (minor_units between 0 and 4)
);

-- NOT VALID: rows written before this migration are not checked (an account opened in `ABC` stays
-- readable), every row written from now on is, whoever writes it — the application role, the ledger's
-- functions or the ledger role itself.
alter table accounts
    add constraint accounts_currency_exists foreign key (currency) references currencies (code) not valid;
alter table tenants
    add constraint tenants_default_currency_exists foreign key (default_currency) references currencies (code) not valid;
