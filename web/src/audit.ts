// An audit event as a person reads it: the action (from the method, in the current language) and the
// summary's fields by name, "before → after" where the summary has both. Summaries are written by the
// ledger's SQL functions (migrations/current/09_accounts.sql, 10_movements.sql, 11_holds.sql: accounts,
// transfers and holds) and by server/services/changes.py (users, terminals, tenants, passwords); their
// usual shape is {"before": {…} | null, "after": {…}}. Anything else — an unknown method, field, value or
// shape, even text that is not JSON — is still shown, spelt out as well as it can be, never an error.
import { AccountKind, AccountStatus } from "../../generated/ts/emoney/accounts/v1/accounts_pb";
import { TenantStatus } from "../../generated/ts/emoney/admin/v1/admin_pb";
import { Role, TerminalStatus } from "../../generated/ts/emoney/auth/v1/auth_pb";
import { PaymentKind, PaymentStatus } from "../../generated/ts/emoney/payments/v1/payments_pb";
import { idOf } from "./api";
import { h, link, type Child } from "./dom";
import { fromSlug } from "./enums";
import { formatDateTime, formatNumber, t } from "./i18n";
import { accountLink, paymentLink } from "./lists";
import type { AuditAction, AuditField } from "./messages";
import { formatMoney } from "./money";
import { shortId } from "./ui";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

function isObject(value: Json | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** `CloseAccount` → `Close account`, `someNewField` → `Some new field`, `top_up` → `Top up`. */
export function spelt(name: string): string {
  const words = name.replace(/([a-z0-9])([A-Z])/g, "$1 $2").replace(/[_-]+/g, " ").trim().toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** The last part of a method name: `/emoney.accounts.v1.AccountsService/FreezeAccount` → `FreezeAccount`,
 * `ledger/ExpireHold` → `ExpireHold`. */
function methodName(method: string): string {
  return method.slice(method.lastIndexOf("/") + 1) || method;
}

function parsed(summaryJson: string): Json | undefined {
  try {
    return JSON.parse(summaryJson) as Json;
  } catch {
    return undefined;
  }
}

/** The action's label: the catalogue's for a known method, else the method's name spelt out. An account
 * opened along the way is said so: a sign-up writes the user and then their account under one method, and
 * the first top-up or cash-out in a currency opens the tenant's float account in it (as CreateAccount does). */
export function actionLabel(method: string, summaryJson: string): string {
  const text = t().audit;
  const name = methodName(method);
  const summary = parsed(summaryJson);
  const after = isObject(summary) ? summary.after : undefined;
  const opensAccount = isObject(summary) && !summary.before && isObject(after) && "accountId" in after && "kind" in after && !("transferId" in after);
  if (opensAccount && name !== "CreateAccount") {
    if (after.kind === "system_float") return text.floatAccountOpened;
    return name === "SignUp" ? text.accountOpenedAtSignUp : text.actions.CreateAccount;
  }
  if (Object.hasOwn(text.actions, name)) return text.actions[name as AuditAction];
  return name.trim() ? text.otherAction(spelt(name)) : text.noMethod;
}

/** What an object in a summary is about, which says what its `status` and `kind` mean. */
type Subject = "account" | "payment" | "hold" | "terminal" | "tenant" | "other";

function subjectOf(value: JsonObject): Subject {
  if ("holdId" in value) return "hold";
  if ("transferId" in value) return "payment";
  if ("accountId" in value) return "account";
  if ("terminal" in value) return "terminal";
  if ("tenant" in value) return "tenant";
  return "other";
}

/** An enum's label for the database's lower-case name of a value (`frozen`, `top_up`), or the name spelt out. */
function enumText<E extends number>(enumObject: Record<string, string | number>, labels: Record<E, string>, slug: string): string {
  const value = fromSlug<E>(enumObject, slug);
  return value ? labels[value] : spelt(slug);
}

function statusText(subject: Subject, status: string): string {
  const enums = t().enums;
  switch (subject) {
    case "account":
      return enumText(AccountStatus, enums.accountStatuses, status);
    case "payment":
    case "hold":
      return enumText(PaymentStatus, enums.paymentStatuses, status);
    case "terminal":
      return enumText(TerminalStatus, enums.terminalStatuses, status);
    case "tenant":
      return enumText(TenantStatus, enums.tenantStatuses, status);
    default:
      return spelt(status);
  }
}

function kindText(subject: Subject, kind: string): string {
  const enums = t().enums;
  if (subject === "payment") return enumText(PaymentKind, enums.paymentKinds, kind);
  if (subject === "account") return enumText(AccountKind, enums.accountKinds, kind);
  return spelt(kind);
}

function rolesText(roles: Json): string {
  const names = Array.isArray(roles) ? roles : [roles];
  return names.map((role) => (typeof role === "string" ? enumText(Role, t().enums.roles, role) : String(role))).join(", ");
}

/** A resource name (`users/…`) or a bare id as a link to its page where the back office has one. */
function resourceLink(collection: "accounts" | "payments" | "users", id: string): Child {
  if (collection === "accounts") return accountLink(`accounts/${id}`);
  if (collection === "payments") return paymentLink(`payments/${id}`);
  return link(`#/users/${id}`, shortId(`users/${id}`));
}

function nameLink(name: string): Child {
  if (name.startsWith("users/")) return resourceLink("users", idOf(name));
  if (name.startsWith("accounts/")) return resourceLink("accounts", idOf(name));
  if (name.startsWith("payments/")) return resourceLink("payments", idOf(name));
  return h("code", null, name);
}

/** The first `currency` anywhere in the summary: the currency of its amounts that have none beside them
 * (a refund's `refundedMinor` before and after; the refund itself carries the currency). */
function findCurrency(value: Json | undefined): string | undefined {
  if (Array.isArray(value)) {
    for (const item of value) {
      const found = findCurrency(item);
      if (found) return found;
    }
  } else if (isObject(value)) {
    if (typeof value.currency === "string") return value.currency;
    for (const item of Object.values(value)) {
      const found = findCurrency(item);
      if (found) return found;
    }
  }
  return undefined;
}

interface Context {
  subject: Subject;
  currency: string | undefined; // of this object, else of the whole summary
}

/** One field's value as text or a link. Never throws for a value of an unexpected type. */
function valueOf(key: string, value: Json, context: Context): Child {
  const text = t();
  if (value === null || value === undefined) return "—";
  if (typeof value === "boolean") return value ? text.app.yes : text.app.no;
  if (Array.isArray(value)) return key === "roles" || key === "adminRoles" ? rolesText(value) : value.map((item) => plain(item)).join(", ");
  if (isObject(value)) return plain(value);
  const raw = String(value);
  switch (key) {
    case "accountId":
    case "debitAccountId":
    case "creditAccountId":
    case "merchantAccountId":
      return resourceLink("accounts", raw);
    case "transferId":
    case "holdId":
      return resourceLink("payments", raw);
    case "ownerUserId":
      return resourceLink("users", raw);
    case "user":
    case "admin":
    case "merchant":
    case "terminal":
    case "tenant":
      return nameLink(raw);
    case "status":
      return statusText(context.subject, raw);
    case "kind":
      return kindText(context.subject, raw);
    case "roles":
    case "adminRoles":
      return rolesText(value);
    case "expiresAt": {
      const date = new Date(raw);
      return Number.isNaN(date.getTime()) ? raw : formatDateTime(date);
    }
    case "currency":
    case "defaultCurrency":
    case "clientId":
      return h("code", null, raw);
  }
  if (/Minor$/.test(key) && /^-?\d+$/.test(raw)) {
    return context.currency ? formatMoney(BigInt(raw), context.currency) : text.audit.minorUnits(formatNumber(BigInt(raw)));
  }
  if (typeof value === "number") return formatNumber(value);
  return raw;
}

function plain(value: Json): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function fieldLabel(key: string): string {
  const fields = t().audit.fields;
  return Object.hasOwn(fields, key) ? fields[key as AuditField] : spelt(key);
}

function same(left: Json | undefined, right: Json | undefined): boolean {
  return JSON.stringify(left) === JSON.stringify(right);
}

function item(key: string, ...value: Child[]): HTMLElement {
  return h("li", { attrs: { "data-field": key } }, h("span", { class: "audit-field" }, fieldLabel(key), ": "), ...value);
}

// Summaries come with their keys sorted alphabetically (jsonb, and the server's sort_keys): shown instead
// in this order — what it is, what happened to it, how much, between whom — other fields after, objects last.
const FIELD_ORDER = [
  "transferId", "holdId", "accountId", "user", "terminal", "tenant", "kind", "status", "amountMinor", "capturedMinor",
  "refundedMinor", "overdraftLimitMinor", "currency", "debitAccountId", "creditAccountId", "merchantAccountId", "ownerUserId",
  "merchant", "clientId", "roles", "passwordChanged", "sessionsRevoked", "defaultCurrency", "admin", "adminRoles", "expiresAt",
];

function ordered(keys: string[], isNested: (key: string) => boolean): string[] {
  const rank = (key: string) => (isNested(key) ? 2 * FIELD_ORDER.length : 0) + (FIELD_ORDER.includes(key) ? FIELD_ORDER.indexOf(key) : FIELD_ORDER.length);
  return [...keys].sort((left, right) => rank(left) - rank(right)); // stable: unknown fields keep their order
}

function contextOf(value: JsonObject, summaryCurrency: string | undefined): Context {
  return { subject: subjectOf(value), currency: typeof value.currency === "string" ? value.currency : summaryCurrency };
}

/** The fields of one object, each as "Label: value"; an object inside is a list of its own. */
function fieldsOf(value: JsonObject, summaryCurrency: string | undefined): HTMLElement[] {
  const context = contextOf(value, summaryCurrency);
  return ordered(Object.keys(value), (key) => isObject(value[key])).map((key) => {
    const field = value[key];
    return isObject(field) ? item(key, fieldList(fieldsOf(field, summaryCurrency))) : item(key, valueOf(key, field, context));
  });
}

/** Before and after as one list: a field in both and changed is "before → after"; a field that did not
 * change, or that only one side has, is shown once. An object after that stands for the same thing as
 * `before` (the hold a capture changed, with the same holdId) is compared with it. */
function changesOf(before: JsonObject, after: JsonObject, summaryCurrency: string | undefined): HTMLElement[] {
  const ids = ["holdId", "transferId", "accountId", "terminal", "tenant", "user"].filter((id) => id in before);
  const counterpart = Object.entries(after).find(([key, value]) => !(key in before) && isObject(value) && ids.some((id) => same(value[id], before[id])));
  if (counterpart && !ids.some((id) => id in after)) {
    const [key, value] = counterpart as [string, JsonObject];
    const rest = Object.fromEntries(Object.entries(after).filter(([other]) => other !== key));
    return [item(key, fieldList(changesOf(before, value, summaryCurrency))), ...fieldsOf(rest, summaryCurrency)];
  }
  const beforeContext = contextOf(before, summaryCurrency);
  const afterContext = contextOf(after, summaryCurrency);
  const keys = ordered([...Object.keys(before), ...Object.keys(after).filter((key) => !(key in before))],
    (key) => isObject(after[key]) || isObject(before[key]));
  return keys.map((key) => {
    const old = before[key];
    const now = after[key];
    if (!(key in after)) return isObject(old) ? item(key, fieldList(fieldsOf(old, summaryCurrency))) : item(key, valueOf(key, old, beforeContext));
    if (isObject(now)) {
      return isObject(old) && !same(old, now)
        ? item(key, fieldList(changesOf(old, now, summaryCurrency)))
        : item(key, fieldList(fieldsOf(now, summaryCurrency)));
    }
    if (!(key in before) || same(old, now)) return item(key, valueOf(key, now, afterContext));
    return item(key, h("span", { class: "before" }, valueOf(key, old, beforeContext)), " → ", h("span", { class: "after" }, valueOf(key, now, afterContext)));
  });
}

function fieldList(items: HTMLElement[]): HTMLElement {
  return h("ul", { class: "audit-fields" }, items);
}

/** The summary's fields, readable; the raw text when it is not an object. */
export function changeView(summaryJson: string): HTMLElement {
  const summary = parsed(summaryJson);
  try {
    if (!isObject(summary)) return h("span", { class: "muted" }, summary === undefined ? summaryJson : plain(summary));
    const currency = findCurrency(summary);
    const { before, after } = summary;
    const hasShape = "after" in summary && (before === null || before === undefined || isObject(before)) && (isObject(after) || after === null);
    if (!hasShape) return fieldList(fieldsOf(summary, currency));
    const others = Object.fromEntries(Object.entries(summary).filter(([key]) => key !== "before" && key !== "after"));
    const items = isObject(before) && isObject(after)
      ? changesOf(before, after, currency)
      : isObject(after) ? fieldsOf(after, currency) : isObject(before) ? fieldsOf(before, currency) : [];
    items.push(...fieldsOf(others, currency));
    return items.length ? fieldList(items) : h("span", { class: "muted" }, t().audit.noChange);
  } catch {
    return h("span", { class: "muted" }, summaryJson); // never let one odd summary break the list
  }
}
