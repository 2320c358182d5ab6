// Paging through list RPCs (AIP-158: page_size at most 100 on the server), the tenant's users and the
// shared tables.
import { AccountKind, type Account } from "../../generated/ts/emoney/accounts/v1/accounts_pb";
import type { IdentityLevel } from "../../generated/ts/emoney/admin/v1/admin_pb";
import type { User } from "../../generated/ts/emoney/auth/v1/auth_pb";
import { PaymentKind, PaymentStatus, type Payment } from "../../generated/ts/emoney/payments/v1/payments_pb";
import { admin, auth, currentSession, idOf } from "./api";
import { h, link, table } from "./dom";
import { accountKindLabel, accountStatusBadge, paymentKindLabel, paymentStatusBadge } from "./enums";
import { t } from "./i18n";
import { formatMoney } from "./money";
import { shortId, when } from "./ui";

export const PAGE_SIZE = 100;

/** Every item of up to `maxPages` pages; `complete` is false when more were left. */
export async function collect<T>(
  fetchPage: (pageToken: string) => Promise<{ items: T[]; nextPageToken: string }>,
  maxPages: number,
): Promise<{ items: T[]; complete: boolean }> {
  const items: T[] = [];
  let token = "";
  for (let page = 0; page < maxPages; page++) {
    const answer = await fetchPage(token);
    items.push(...answer.items);
    token = answer.nextPageToken;
    if (!token) return { items, complete: true };
  }
  return { items, complete: false };
}

// There is no GetUser in the API: people are found in ListUsers. The list is read once and shared by
// every screen that names people (account owners, a person's page, merchants), and read again only
// when it is older than USERS_MAX_AGE_MS, when the page itself created someone (forgetUsers), or when
// a complete list lacks the person asked for (added elsewhere since). A list cut short at USER_PAGES
// is not read again for someone it lacks: the next read would stop at the same place.
const USER_PAGES = 20;
const USERS_MAX_AGE_MS = 60_000;

export interface UserDirectory {
  users: User[]; // oldest first, as ListUsers returns them
  byName: Map<string, User>;
  complete: boolean; // false when the tenant has more than USER_PAGES pages of users
  readAtMs: number;
}

interface CachedUsers {
  session: string; // whose list it is: never shown to another sign-in or tenant
  readAtMs: number;
  directory: Promise<UserDirectory>;
}

let cachedUsers: CachedUsers | null = null;

async function readUsers(readAtMs: number): Promise<UserDirectory> {
  const listed = await collect(async (pageToken) => {
    const answer = await admin.listUsers({ pageSize: PAGE_SIZE, pageToken });
    return { items: answer.users, nextPageToken: answer.nextPageToken };
  }, USER_PAGES);
  return { users: listed.items, byName: new Map(listed.items.map((user) => [user.name, user])), complete: listed.complete, readAtMs };
}

/** The tenant's users, read at most once per USERS_MAX_AGE_MS (callers at the same time share one read). */
export function userDirectory(): Promise<UserDirectory> {
  const session = currentSession();
  const owner = session ? `${session.tenant} ${session.user.name}` : "";
  const nowMs = Date.now();
  if (!cachedUsers || cachedUsers.session !== owner || nowMs - cachedUsers.readAtMs > USERS_MAX_AGE_MS) {
    const entry: CachedUsers = { session: owner, readAtMs: nowMs, directory: readUsers(nowMs) };
    // A failed read is not kept: the next caller tries again.
    entry.directory.catch(() => {
      if (cachedUsers === entry) cachedUsers = null;
    });
    cachedUsers = entry;
  }
  return cachedUsers.directory;
}

/** Drops the cached users: the next userDirectory() reads them again. Call after creating or changing a user. */
export function forgetUsers(): void {
  cachedUsers = null;
}

/** The user called `name` (`users/{id}`), or undefined when there is none among the first USER_PAGES pages. */
export async function findUser(name: string): Promise<User | undefined> {
  const askedAtMs = Date.now();
  const directory = await userDirectory();
  const found = directory.byName.get(name);
  if (found || !directory.complete || directory.readAtMs >= askedAtMs) return found;
  forgetUsers();
  return (await userDirectory()).byName.get(name);
}

export function accountLink(name: string, text?: string): HTMLElement | string {
  if (!name) return "—";
  return link(`#/accounts/${idOf(name)}`, text ?? shortId(name));
}

/** A link to a resource's page named in words (`label`), its resource name (`accounts/…`) as the tooltip. */
export function namedLink(href: string, label: string, resourceName: string): HTMLElement {
  return h("a", { attrs: { href, title: resourceName } }, label);
}

/** The start of an id in small print after a name, so two accounts of one person can be told apart. */
export function idNote(name: string): HTMLElement {
  return h("small", { class: "id", attrs: { title: name } }, shortId(name));
}

/** Who holds an account, in words: the holder's name, or the float's label for the tenant's own account. */
export function holderName(account: Account): string {
  if (account.kind === AccountKind.SYSTEM_FLOAT || !account.owner) return t().lists.float;
  return account.ownerDisplayName || shortId(account.owner);
}

/** The name of a payment's party (`from` or `to`) as the back office is told it; `undefined` when the answer
 * carries no names at all (a live event, another caller's view), so the account's id is shown instead. */
export function partyName(payment: Payment, side: "from" | "to"): string | undefined {
  const named = Boolean(payment.fromDisplayName || payment.toDisplayName);
  const name = side === "from" ? payment.fromDisplayName : payment.toDisplayName;
  if (name) return name;
  // Every payment has a person on one side; the side without a holder's name is the tenant's float.
  return named ? t().lists.float : undefined;
}

/** A payment's party as a link to its account: its holder's name where known, else the account's short id. */
export function partyLink(payment: Payment, side: "from" | "to"): HTMLElement | string {
  const account = side === "from" ? payment.fromAccount : payment.toAccount;
  if (!account) return "—";
  const name = partyName(payment, side);
  return name ? namedLink(`#/accounts/${idOf(account)}`, name, account) : accountLink(account);
}

/** The terminal that charged, in small print ("via Bakery till 1"), its resource name as the tooltip. */
export function terminalNote(payment: Payment): HTMLElement | null {
  if (!payment.terminal) return null;
  const name = payment.terminalDisplayName || shortId(payment.terminal);
  return h("small", { class: "secondary", testid: "payment-terminal", attrs: { title: payment.terminal } }, t().lists.viaTerminal(name));
}

export function paymentLink(name: string): HTMLElement | string {
  return name ? link(`#/payments/${idOf(name)}`, shortId(name)) : "—";
}

export function accountsTable(testid: string, accounts: Account[]): HTMLElement {
  return table(
    testid,
    t().lists.accountHeadings,
    accounts.map((account) => [
      h(
        "span",
        { class: "named", testid: "account-holder" },
        namedLink(`#/accounts/${idOf(account.name)}`, holderName(account), account.name),
        idNote(account.name),
      ),
      accountKindLabel(account.kind),
      accountStatusBadge(account.status),
      h("span", { class: "money" }, formatMoney(account.balanceMinor, account.currency, account.currencyMinorUnits)),
      h("span", { class: "money" }, formatMoney(account.heldMinor, account.currency, account.currencyMinorUnits)),
      h("span", { class: "money" }, formatMoney(account.availableMinor, account.currency, account.currencyMinorUnits)),
      when(account.createTime),
    ]),
    t().lists.noAccounts,
  );
}

export function paymentsTable(testid: string, payments: Payment[], actions?: (payment: Payment) => HTMLElement | null): HTMLElement {
  const headings = [...t().lists.paymentHeadings];
  if (actions) headings.push("");
  return table(
    testid,
    headings,
    payments.map((payment) => {
      const cells = [
        paymentLink(payment.name),
        when(payment.createTime),
        paymentKindLabel(payment.kind),
        paymentStatusBadge(payment.status),
        partyLink(payment, "from"),
        h("span", { class: "named" }, partyLink(payment, "to"), terminalNote(payment)),
        payment.description ? h("span", { class: "description", testid: "payment-description" }, payment.description) : "",
        h("span", { class: "money" }, formatMoney(payment.amountMinor, payment.currency)),
        payment.refundedMinor > 0n ? h("span", { class: "money" }, formatMoney(payment.refundedMinor, payment.currency)) : "—",
      ];
      if (actions) cells.push(actions(payment) ?? "");
      return cells;
    }),
    t().lists.noPayments,
  );
}

const REFUNDABLE_KINDS: readonly PaymentKind[] = [PaymentKind.PAYMENT, PaymentKind.CAPTURE];
const REFUNDABLE_STATUSES: readonly PaymentStatus[] = [PaymentStatus.COMPLETED, PaymentStatus.PARTIALLY_REFUNDED];

/** Payments that can still be refunded (server: REFUNDABLE_TRANSFER_KINDS), and how much is left. */
export function refundableMinor(payment: Payment): bigint {
  if (!REFUNDABLE_KINDS.includes(payment.kind)) return 0n;
  if (!REFUNDABLE_STATUSES.includes(payment.status)) return 0n;
  return payment.amountMinor - payment.refundedMinor;
}

/** The tenant's identity levels, lowest rank first (ListIdentityLevels); none when they cannot be read. */
export async function identityLevels(): Promise<IdentityLevel[]> {
  try {
    return (await admin.listIdentityLevels({})).identityLevels;
  } catch {
    return [];
  }
}

/** A customer's level in words: the level's name; no level set is the lowest level; "—" when the tenant has none. */
export function levelName(levels: IdentityLevel[], code: string): string {
  if (!code) return levels[0]?.displayName ?? "—";
  return levels.find((level) => level.code === code)?.displayName ?? code;
}

/** The tenant's default currency (GetTenant), read once per sign-in: the currency terminals' limits are shown in. */
let tenantCurrencyCache: { tenant: string; currency: Promise<string> } | null = null;

export function tenantCurrency(): Promise<string> {
  const tenant = currentSession()?.tenant ?? "";
  if (!tenantCurrencyCache || tenantCurrencyCache.tenant !== tenant) {
    const entry = { tenant, currency: auth.getTenant({ name: tenant }).then((answer) => answer.tenant?.defaultCurrency ?? "") };
    entry.currency.catch(() => {
      if (tenantCurrencyCache === entry) tenantCurrencyCache = null;
    });
    tenantCurrencyCache = entry;
  }
  return tenantCurrencyCache.currency;
}
