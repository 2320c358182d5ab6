import { PaymentKind, PaymentStatus, type Payment } from "../../../generated/ts/emoney/payments/v1/payments_pb";
import { idOf, newRequestId, payments } from "../api";
import { h, input, link, replace, select, table } from "../dom";
import { filterOptions, fromSlug, PAYMENT_STATUS_LABELS, paymentKindLabel, paymentStatusBadge } from "../enums";
import { accountLink, paymentLink, paymentsTable, refundableMinor } from "../lists";
import { amountText, formatMoney, parseAmount } from "../money";
import { act, card, loading, page, say, shortId, since, when } from "../ui";
import type { Screen } from "../screen";

/** A refund of all or part of what is left of `payment`; `done` is called with the refund. */
export function refundForm(payment: Payment, done: (refund: Payment) => Promise<void>): HTMLFormElement {
  const left = refundableMinor(payment);
  const amount = input(`refund-${idOf(payment.name)}`, { inputmode: "decimal", value: amountText(left, payment.currency), size: "8", "aria-label": "Amount to refund" });
  let requestId = newRequestId();
  amount.addEventListener("input", () => (requestId = newRequestId()));
  const form = h("form", { class: "refund-form", testid: "refund-form" }, amount, h("button", { attrs: { type: "submit" }, testid: "refund" }, "Refund"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await act(form, async () => {
      const refund = (await payments.refundPayment({ requestId, name: payment.name, amountMinor: parseAmount(amount.value, payment.currency) })).payment;
      requestId = newRequestId();
      if (refund) await done(refund);
    });
  });
  return form;
}

const STATUSES = filterOptions(PaymentStatus, PAYMENT_STATUS_LABELS, "Any status");
const PERIODS: [string, string][] = [["1", "Today and yesterday"], ["7", "Last 7 days"], ["30", "Last 30 days"], ["0", "Everything"]];

export const paymentsScreen: Screen = async (main, _params, query) => {
  const status = select("status", STATUSES, query.get("status") ?? "");
  const period = select("period", PERIODS, query.get("period") ?? "7");
  const account = query.get("account") ?? "";
  const results = h("div", null, loading());
  const more = h("button", { testid: "payments-more" }, "Show more");
  const filter = () => {
    const next = new URLSearchParams({ period: period.value });
    if (status.value) next.set("status", status.value);
    if (account) next.set("account", account);
    window.location.hash = `#/payments?${next}`;
  };
  status.addEventListener("change", filter);
  period.addEventListener("change", filter);
  replace(
    main,
    page(
      "Payments",
      h("div", { class: "toolbar" }, status, period, account ? h("span", null, "Account ", accountLink(`accounts/${account}`), " ", link("#/payments", "(all)")) : null),
      results,
      more,
    ),
  );
  const shown: Payment[] = [];
  let pageToken = "";
  const load = async () => {
    const answer = await payments.listPayments({
      pageSize: 50,
      pageToken,
      status: fromSlug<PaymentStatus>(PaymentStatus, status.value),
      account: account ? `accounts/${account}` : "",
      startTime: since(Number(period.value)),
    });
    shown.push(...answer.payments);
    pageToken = answer.nextPageToken;
    more.hidden = !pageToken;
    replace(results, paymentsTable("payments", shown, (payment) =>
      refundableMinor(payment) > 0n
        ? refundForm(payment, async (refund) => {
            await reloadFirstPage();
            say("notice", `Refunded ${formatMoney(refund.amountMinor, refund.currency)} of payment ${shortId(payment.name)}.`);
          })
        : null,
    ));
  };
  const reloadFirstPage = async () => {
    shown.length = 0;
    pageToken = "";
    await load();
  };
  more.addEventListener("click", () => act(more, load));
  await load();
};

export const paymentScreen: Screen = async (main, [paymentId]) => {
  const name = `payments/${paymentId}`;
  replace(main, page("Payment", loading()));
  const render = async (notice?: string) => {
    const payment = (await payments.getPayment({ name })).payment!;
    const left = refundableMinor(payment);
    const details = table("payment-details", ["", ""], [
      ["Kind", paymentKindLabel(payment.kind)],
      ["Status", paymentStatusBadge(payment.status)],
      ["Amount", h("span", { class: "money", testid: "payment-amount" }, formatMoney(payment.amountMinor, payment.currency))],
      ["Refunded", h("span", { class: "money", testid: "payment-refunded" }, formatMoney(payment.refundedMinor, payment.currency))],
      payment.kind === PaymentKind.HOLD ? ["Captured", formatMoney(payment.capturedMinor, payment.currency)] : null,
      ["From", accountLink(payment.fromAccount, payment.fromAccount)],
      ["To", accountLink(payment.toAccount, payment.toAccount)],
      ["Terminal", payment.terminal || "—"],
      ["Related payment", paymentLink(payment.relatedPayment)],
      ["Created", when(payment.createTime)],
      payment.expireTime ? ["Hold expires", when(payment.expireTime)] : null,
      ["Request id", h("code", null, payment.requestId)],
    ].filter((row): row is [string, HTMLElement | string] => row !== null));
    const receipt = h("div", null);
    const showReceipt = h("button", { testid: "show-receipt" }, "Show receipt");
    showReceipt.addEventListener("click", () =>
      act(showReceipt, async () => {
        const answer = await payments.getReceipt({ payment: name });
        replace(receipt, h("pre", { class: "receipt" }, new TextDecoder().decode(answer.content)));
      }),
    );
    replace(
      main,
      page(
        `Payment ${shortId(payment.name)}`,
        card(null, details),
        left > 0n
          ? card(`Refund (up to ${formatMoney(left, payment.currency)})`, refundForm(payment, async (refund) =>
              render(`Refunded ${formatMoney(refund.amountMinor, refund.currency)}.`)))
          : null,
        payment.kind === PaymentKind.HOLD ? null : card("Receipt", showReceipt, receipt),
      ),
    );
    if (notice) say("notice", notice);
  };
  await render();
};
