// Paging through list RPCs (AIP-158: page_size at most 100 on the server) and the shared tables.
import type { Account } from "../../generated/ts/emoney/accounts/v1/accounts_pb";
import type { Payment } from "../../generated/ts/emoney/payments/v1/payments_pb";
import { idOf } from "./api";
import { badge, h, link, table } from "./dom";
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

export function accountLink(name: string, text?: string): HTMLElement | string {
  if (!name) return "—";
  return link(`#/accounts/${idOf(name)}`, text ?? shortId(name));
}

export function paymentLink(name: string): HTMLElement | string {
  return name ? link(`#/payments/${idOf(name)}`, shortId(name)) : "—";
}

export function accountsTable(testid: string, accounts: Account[], owners?: Map<string, string>): HTMLElement {
  return table(
    testid,
    ["Account", "Kind", "Owner", "Status", "Balance", "Held", "Available", "Opened"],
    accounts.map((account) => [
      accountLink(account.name),
      account.kind.replace("_", " "),
      account.owner ? link(`#/users/${idOf(account.owner)}`, owners?.get(account.owner) ?? shortId(account.owner)) : "system",
      badge(account.status),
      h("span", { class: "money" }, formatMoney(account.balanceMinor, account.currency)),
      h("span", { class: "money" }, formatMoney(account.heldMinor, account.currency)),
      h("span", { class: "money" }, formatMoney(account.availableMinor, account.currency)),
      when(account.createTime),
    ]),
    "No accounts.",
  );
}

export function paymentsTable(testid: string, payments: Payment[], actions?: (payment: Payment) => HTMLElement | null): HTMLElement {
  const headings = ["Payment", "When", "Kind", "Status", "From", "To", "Amount", "Refunded"];
  if (actions) headings.push("");
  return table(
    testid,
    headings,
    payments.map((payment) => {
      const cells = [
        paymentLink(payment.name),
        when(payment.createTime),
        payment.kind.replace("_", " "),
        badge(payment.status),
        accountLink(payment.fromAccount),
        accountLink(payment.toAccount),
        h("span", { class: "money" }, formatMoney(payment.amountMinor, payment.currency)),
        payment.refundedMinor > 0n ? h("span", { class: "money" }, formatMoney(payment.refundedMinor, payment.currency)) : "—",
      ];
      if (actions) cells.push(actions(payment) ?? "");
      return cells;
    }),
    "No payments.",
  );
}

/** Payments that can still be refunded (server: REFUNDABLE_TRANSFER_KINDS), and how much is left. */
export function refundableMinor(payment: Payment): bigint {
  if (!["payment", "capture"].includes(payment.kind)) return 0n;
  if (!["completed", "partially_refunded"].includes(payment.status)) return 0n;
  return payment.amountMinor - payment.refundedMinor;
}
