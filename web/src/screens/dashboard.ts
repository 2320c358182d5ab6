import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { AccountKind, AccountStatus, type Account } from "../../../generated/ts/emoney/accounts/v1/accounts_pb";
import { PaymentKind, type Payment } from "../../../generated/ts/emoney/payments/v1/payments_pb";
import { accounts, payments } from "../api";
import { h, link, replace } from "../dom";
import { collect, PAGE_SIZE, paymentsTable } from "../lists";
import { formatNumber, t } from "../i18n";
import { formatMoney } from "../money";
import { card, loading, page, stat } from "../ui";
import type { Screen } from "../screen";

/** Payments that moved money from people to people or shops today (not top-ups, cash-outs, holds or refunds). */
const MOVING_KINDS: readonly PaymentKind[] = [PaymentKind.PAYMENT, PaymentKind.P2P, PaymentKind.CAPTURE];

/** Today's payments listed on the dashboard (the rest: All payments). */
const SHOWN_TODAY = 15;

/** Sums of minor units per currency, shown one line per currency. */
function perCurrency(items: { currency: string; amountMinor: bigint }[]): Map<string, bigint> {
  const sums = new Map<string, bigint>();
  for (const item of items) sums.set(item.currency, (sums.get(item.currency) ?? 0n) + item.amountMinor);
  return sums;
}

function moneyLines(sums: Map<string, bigint>): HTMLElement {
  if (sums.size === 0) return h("span", null, "—");
  return h("span", null, [...sums].map(([currency, minor]) => h("div", { class: "money" }, formatMoney(minor, currency))));
}

export const dashboardScreen: Screen = async (main) => {
  const text = t().dashboard;
  replace(main, page(text.title, loading()));
  const midnight = new Date();
  midnight.setHours(0, 0, 0, 0);
  const [allAccounts, today] = await Promise.all([
    collect(async (pageToken) => {
      const answer = await accounts.listAccounts({ pageSize: PAGE_SIZE, pageToken });
      return { items: answer.accounts, nextPageToken: answer.nextPageToken };
    }, 50),
    collect(async (pageToken) => {
      const answer = await payments.listPayments({ pageSize: PAGE_SIZE, pageToken, startTime: timestampFromMs(midnight.getTime()) });
      return { items: answer.payments, nextPageToken: answer.nextPageToken };
    }, 20),
  ]);
  const held: Account[] = allAccounts.items.filter((account) => account.kind !== AccountKind.SYSTEM_FLOAT);
  const floats = allAccounts.items.filter((account) => account.kind === AccountKind.SYSTEM_FLOAT);
  // The float accounts carry the other side of every top-up and cash-out: the money in circulation is
  // minus their balance. (No float account yet: nothing was ever topped up.)
  const totalFloat = perCurrency(floats.map((account) => ({ currency: account.currency, amountMinor: -account.balanceMinor })));
  const moved: Payment[] = today.items.filter((payment) => MOVING_KINDS.includes(payment.kind));
  const count = (kind: AccountKind) => held.filter((account) => account.kind === kind).length;
  const frozen = held.filter((account) => account.status === AccountStatus.FROZEN).length;
  const partial = !allAccounts.complete || !today.complete;
  replace(
    main,
    page(
      text.title,
      h(
        "div",
        { class: "stats" },
        stat(text.accounts, formatNumber(held.length), "stat-accounts"),
        stat(text.customerMerchantAccounts, `${formatNumber(count(AccountKind.CUSTOMER))} / ${formatNumber(count(AccountKind.MERCHANT))}`, "stat-kinds"),
        stat(text.frozenAccounts, formatNumber(frozen), "stat-frozen"),
        stat(text.totalFloat, moneyLines(totalFloat), "stat-float"),
        // Counts what the list below shows (every payment today); the volume is what people paid people and shops.
        stat(text.paymentsToday, formatNumber(today.items.length), "stat-payments-today"),
        stat(text.paidToday, moneyLines(perCurrency(moved)), "stat-volume-today"),
      ),
      partial ? h("p", { class: "muted" }, text.partial) : null,
      card(
        today.items.length > SHOWN_TODAY
          ? text.activityLatest(formatNumber(SHOWN_TODAY), formatNumber(today.items.length))
          : text.activity,
        paymentsTable("payments-today", today.items.slice(0, SHOWN_TODAY)),
        h("p", null, link("#/payments", text.allPayments), " · ", link("#/live", text.watchLive)),
      ),
    ),
  );
};
