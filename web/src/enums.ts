// The contract's enums (kinds, statuses, roles, payment events) as people read them, in the current
// language. Each table is a Record over its generated enum in messages.ts, so a value added to the
// contract fails `tsc` until it has its label there in both languages. Screens compare enum values
// (AccountStatus.FROZEN), never text; the page's own URLs carry the short lower-case name of a value (`#/accounts?status=frozen`), read back with `fromSlug`.
import { AccountKind, AccountStatus } from "../../generated/ts/emoney/accounts/v1/accounts_pb";
import { badge } from "./dom";
import { t } from "./i18n";
import { Role, TerminalStatus, UserStatus } from "../../generated/ts/emoney/auth/v1/auth_pb";
import { PaymentEventType, PaymentKind, PaymentStatus } from "../../generated/ts/emoney/payments/v1/payments_pb";

// The labels themselves are in the message catalogue (messages.ts), one Record per enum and language.
export const ACCOUNT_KIND_LABELS = (): Record<AccountKind, string> => t().enums.accountKinds;
export const ACCOUNT_STATUS_LABELS = (): Record<AccountStatus, string> => t().enums.accountStatuses;
export const PAYMENT_KIND_LABELS = (): Record<PaymentKind, string> => t().enums.paymentKinds;
export const PAYMENT_STATUS_LABELS = (): Record<PaymentStatus, string> => t().enums.paymentStatuses;
export const PAYMENT_EVENT_LABELS = (): Record<PaymentEventType, string> => t().enums.paymentEvents;
export const ROLE_LABELS = (): Record<Role, string> => t().enums.roles;
export const USER_STATUS_LABELS = (): Record<UserStatus, string> => t().enums.userStatuses;
export const TERMINAL_STATUS_LABELS = (): Record<TerminalStatus, string> => t().enums.terminalStatuses;

/** A generated enum object: value names to numbers and, for numeric enums, numbers back to names. */
type EnumObject = Record<string, string | number>;

/** The short lower-case name of an enum value, for URLs and CSS classes: AccountStatus.FROZEN → `frozen`. */
export function slugOf(enumObject: EnumObject, value: number): string {
  const name = enumObject[value];
  return typeof name === "string" ? name.toLowerCase() : "";
}

/** The enum value a short name stands for (`frozen` → AccountStatus.FROZEN); 0 (UNSPECIFIED) for none. */
export function fromSlug<E extends number>(enumObject: EnumObject, slug: string | null): E {
  const value = slug ? enumObject[slug.toUpperCase()] : undefined;
  return (typeof value === "number" ? value : 0) as E;
}

/** Options for a filter: `[short name, Label]` for every value but UNSPECIFIED, after `[“”, anyLabel]`. */
export function filterOptions<E extends number>(enumObject: EnumObject, labels: Record<E, string>, anyLabel: string): [string, string][] {
  const values = Object.values(enumObject).filter((value): value is E => typeof value === "number" && value !== 0);
  return [["", anyLabel], ...values.map((value): [string, string] => [slugOf(enumObject, value), capitalized(labels[value])])];
}

export function capitalized(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** The label of `value`; a number this build does not know yet (a newer server) is shown as such. */
export function labelOf<E extends number>(labels: Record<E, string>, value: E): string {
  return labels[value] ?? t().enums.unknown(value);
}

function enumBadge<E extends number>(enumObject: EnumObject, labels: Record<E, string>, value: E): HTMLElement {
  return badge(labelOf(labels, value), slugOf(enumObject, value));
}

export const accountKindLabel = (kind: AccountKind): string => labelOf(ACCOUNT_KIND_LABELS(), kind);
/** "customer account", "conta de cliente": an account of that kind. */
export const accountOfKindLabel = (kind: AccountKind): string => labelOf(t().enums.accountsOfKind, kind);
export const paymentKindLabel = (kind: PaymentKind): string => labelOf(PAYMENT_KIND_LABELS(), kind);
export const roleLabel = (role: Role): string => labelOf(ROLE_LABELS(), role);
export const accountStatusBadge = (status: AccountStatus): HTMLElement => enumBadge(AccountStatus, ACCOUNT_STATUS_LABELS(), status);
export const paymentStatusBadge = (status: PaymentStatus): HTMLElement => enumBadge(PaymentStatus, PAYMENT_STATUS_LABELS(), status);
export const paymentEventBadge = (event: PaymentEventType): HTMLElement => enumBadge(PaymentEventType, PAYMENT_EVENT_LABELS(), event);
export const userStatusBadge = (status: UserStatus): HTMLElement => enumBadge(UserStatus, USER_STATUS_LABELS(), status);
export const terminalStatusBadge = (status: TerminalStatus): HTMLElement => enumBadge(TerminalStatus, TERMINAL_STATUS_LABELS(), status);
