-- 0019: a person's phone number (E.164, e.g. +5511912345678), so that citizens can pay each other by phone
-- number as by e-mail address (PaymentsService.FindPayee). Optional; unique within a tenant, as e-mail is.
-- The servers parse and validate it with the `phonenumbers` library (domain/phones.py); the database
-- checks the stored form.
alter table users
    add column phone_e164 text check (phone_e164 ~ '^\+[1-9][0-9]{6,14}$');
create unique index users_phone_per_tenant on users (tenant_id, phone_e164) where phone_e164 is not null;
