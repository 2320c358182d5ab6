// The contract's enums (kinds, statuses, roles, payment events) as people read them. Each table is a
// Record over its generated enum, so a value added to the contract fails `tsc` until it has its label
// here. Screens compare enum values (AccountStatus.FROZEN), never text; the page's own URLs carry the
// short lower-case name of a value (`#/accounts?status=frozen`), read back with `fromSlug`.
import { AccountKind, AccountStatus } from "../../generated/ts/emoney/accounts/v1/accounts_pb";
import { badge } from "./dom";
import { Role, TerminalStatus, UserStatus } from "../../generated/ts/emoney/auth/v1/auth_pb";
import { PaymentEventType, PaymentKind, PaymentStatus } from "../../generated/ts/emoney/payments/v1/payments_pb";

export const ACCOUNT_KIND_LABELS: Record<AccountKind, string> = {
  [AccountKind.UNSPECIFIED]: "unknown kind",
  [AccountKind.CUSTOMER]: "customer",
  [AccountKind.MERCHANT]: "merchant",
  [AccountKind.SYSTEM_FLOAT]: "float",
};

export const ACCOUNT_STATUS_LABELS: Record<AccountStatus, string> = {
  [AccountStatus.UNSPECIFIED]: "unknown",
  [AccountStatus.ACTIVE]: "active",
  [AccountStatus.FROZEN]: "frozen",
  [AccountStatus.CLOSED]: "closed",
};

export const PAYMENT_KIND_LABELS: Record<PaymentKind, string> = {
  [PaymentKind.UNSPECIFIED]: "unknown kind",
  [PaymentKind.P2P]: "person to person",
  [PaymentKind.PAYMENT]: "payment to a shop",
  [PaymentKind.TOP_UP]: "top-up (cash in)",
  [PaymentKind.WITHDRAWAL]: "cash-out",
  [PaymentKind.CAPTURE]: "captured hold",
  [PaymentKind.REFUND]: "refund",
  [PaymentKind.HOLD]: "hold (reserved)",
};

export const PAYMENT_STATUS_LABELS: Record<PaymentStatus, string> = {
  [PaymentStatus.UNSPECIFIED]: "unknown",
  [PaymentStatus.COMPLETED]: "completed",
  [PaymentStatus.PARTIALLY_REFUNDED]: "partly refunded",
  [PaymentStatus.REFUNDED]: "refunded",
  [PaymentStatus.AUTHORIZED]: "authorized (held)",
  [PaymentStatus.CAPTURED]: "captured",
  [PaymentStatus.VOIDED]: "voided",
  [PaymentStatus.EXPIRED]: "expired",
};

export const PAYMENT_EVENT_LABELS: Record<PaymentEventType, string> = {
  [PaymentEventType.UNSPECIFIED]: "unknown",
  [PaymentEventType.CREATED]: "created",
  [PaymentEventType.CAPTURED]: "captured",
  [PaymentEventType.VOIDED]: "voided",
  [PaymentEventType.EXPIRED]: "expired",
  [PaymentEventType.REFUNDED]: "refunded",
};

export const ROLE_LABELS: Record<Role, string> = {
  [Role.UNSPECIFIED]: "no role",
  [Role.CUSTOMER]: "customer",
  [Role.MERCHANT]: "merchant",
  [Role.OPERATOR]: "operator",
  [Role.TENANT_ADMIN]: "tenant admin",
  [Role.PLATFORM_ADMIN]: "platform admin",
};

export const USER_STATUS_LABELS: Record<UserStatus, string> = {
  [UserStatus.UNSPECIFIED]: "unknown",
  [UserStatus.ACTIVE]: "active",
  [UserStatus.DISABLED]: "disabled",
};

export const TERMINAL_STATUS_LABELS: Record<TerminalStatus, string> = {
  [TerminalStatus.UNSPECIFIED]: "unknown",
  [TerminalStatus.ACTIVE]: "active",
  [TerminalStatus.DISABLED]: "disabled",
};

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
  return labels[value] ?? `unknown (${value})`;
}

function enumBadge<E extends number>(enumObject: EnumObject, labels: Record<E, string>, value: E): HTMLElement {
  return badge(labelOf(labels, value), slugOf(enumObject, value));
}

export const accountKindLabel = (kind: AccountKind): string => labelOf(ACCOUNT_KIND_LABELS, kind);
export const paymentKindLabel = (kind: PaymentKind): string => labelOf(PAYMENT_KIND_LABELS, kind);
export const roleLabel = (role: Role): string => labelOf(ROLE_LABELS, role);
export const accountStatusBadge = (status: AccountStatus): HTMLElement => enumBadge(AccountStatus, ACCOUNT_STATUS_LABELS, status);
export const paymentStatusBadge = (status: PaymentStatus): HTMLElement => enumBadge(PaymentStatus, PAYMENT_STATUS_LABELS, status);
export const paymentEventBadge = (event: PaymentEventType): HTMLElement => enumBadge(PaymentEventType, PAYMENT_EVENT_LABELS, event);
export const userStatusBadge = (status: UserStatus): HTMLElement => enumBadge(UserStatus, USER_STATUS_LABELS, status);
export const terminalStatusBadge = (status: TerminalStatus): HTMLElement => enumBadge(TerminalStatus, TERMINAL_STATUS_LABELS, status);
