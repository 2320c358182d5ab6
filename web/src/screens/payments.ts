import { PaymentKind, PaymentStatus, type Payment } from "../../../generated/ts/emoney/payments/v1/payments_pb";
import { accounts, idOf, newRequestId, payments } from "../api";
import { h, input, link, replace, select, table } from "../dom";
import { filterOptions, fromSlug, PAYMENT_STATUS_LABELS, paymentKindLabel, paymentStatusBadge } from "../enums";
import { t } from "../i18n";
import { accountLink, holderName, idNote, namedLink, partyLink, paymentLink, paymentsTable, refundableMinor } from "../lists";
import { amountText, formatMoney, parseAmount } from "../money";
import { act, card, loading, page, say, shortId, since, when } from "../ui";
import type { Screen } from "../screen";

/** A refund of all or part of what is left of `payment`; `done` is called with the refund. */
export function refundForm(payment: Payment, done: (refund: Payment) => Promise<void>): HTMLFormElement {
  const left = refundableMinor(payment);
  const amount = input(`refund-${idOf(payment.name)}`, { inputmode: "decimal", value: amountText(left, payment.currency), size: "8", "aria-label": t().payments.amountToRefund });
  let requestId = newRequestId();
  amount.addEventListener("input", () => (requestId = newRequestId()));
  const form = h("form", { class: "refund-form", testid: "refund-form" }, amount, h("button", { attrs: { type: "submit" }, testid: "refund" }, t().payments.refund));
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

function periods(): [string, string][] {
  const text = t().payments.periods;
  return [["1", text.recent], ["7", text.last7], ["30", text.last30], ["0", text.everything]];
}

export const paymentsScreen: Screen = async (main, _params, query) => {
  const text = t().payments;
  const status = select("status", filterOptions(PaymentStatus, PAYMENT_STATUS_LABELS(), text.anyStatus), query.get("status") ?? "");
  const period = select("period", periods(), query.get("period") ?? "7");
  const account = query.get("account") ?? "";
  const results = h("div", null, loading());
  const more = h("button", { testid: "payments-more" }, t().app.showMore);
  // The account filtered on, named after its holder once it is read (its short id until then, or if it cannot be).
  const filteredAccount = h("span", { testid: "payments-account" }, account ? accountLink(`accounts/${account}`) : null);
  if (account) {
    accounts.getAccount({ name: `accounts/${account}` }).then(
      (answer) => answer.account && replace(filteredAccount, namedLink(`#/accounts/${account}`, holderName(answer.account), answer.account.name)),
      () => undefined,
    );
  }
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
      text.title,
      h("div", { class: "toolbar" }, status, period, account ? h("span", null, text.account, filteredAccount, " ", link("#/payments", text.all)) : null),
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
            say("notice", t().payments.refundedOf(formatMoney(refund.amountMinor, refund.currency), shortId(payment.name)));
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
  replace(main, page(t().payments.payment, loading()));
  const render = async (notice?: string) => {
    const text = t().payments;
    const payment = (await payments.getPayment({ name })).payment!;
    const left = refundableMinor(payment);
    const details = table("payment-details", ["", ""], [
      [text.kind, paymentKindLabel(payment.kind)],
      [text.status, paymentStatusBadge(payment.status)],
      [text.amount, h("span", { class: "money", testid: "payment-amount" }, formatMoney(payment.amountMinor, payment.currency))],
      [text.refundedLabel, h("span", { class: "money", testid: "payment-refunded" }, formatMoney(payment.refundedMinor, payment.currency))],
      payment.kind === PaymentKind.HOLD ? [text.captured, formatMoney(payment.capturedMinor, payment.currency)] : null,
      [text.from, h("span", { class: "named", testid: "payment-from" }, partyLink(payment, "from"), payment.fromAccount ? idNote(payment.fromAccount) : null)],
      [text.to, h("span", { class: "named", testid: "payment-to" }, partyLink(payment, "to"), payment.toAccount ? idNote(payment.toAccount) : null)],
      [text.terminal, payment.terminal
        ? h("span", { class: "named", testid: "payment-terminal" }, payment.terminalDisplayName || payment.terminal, idNote(payment.terminal))
        : "—"],
      payment.description ? [text.description, h("span", { testid: "payment-description" }, payment.description)] : null,
      [text.related, paymentLink(payment.relatedPayment)],
      [text.created, when(payment.createTime)],
      payment.expireTime ? [text.holdExpires, when(payment.expireTime)] : null,
      [text.requestId, h("code", null, payment.requestId)],
    ].filter((row): row is [string, HTMLElement | string] => row !== null), t().app.nothing);
    const receipt = h("div", null);
    const showReceipt = h("button", { testid: "show-receipt" }, text.showReceipt);
    showReceipt.addEventListener("click", () =>
      act(showReceipt, async () => {
        const answer = await payments.getReceipt({ payment: name });
        replace(receipt, h("pre", { class: "receipt" }, new TextDecoder().decode(answer.content)));
      }),
    );
    replace(
      main,
      page(
        text.paymentTitle(shortId(payment.name)),
        card(null, details),
        left > 0n
          ? card(text.refundUpTo(formatMoney(left, payment.currency)), refundForm(payment, async (refund) =>
              render(t().payments.refunded(formatMoney(refund.amountMinor, refund.currency)))))
          : null,
        payment.kind === PaymentKind.HOLD ? null : card(text.receipt, showReceipt, receipt),
      ),
    );
    if (notice) say("notice", notice);
  };
  await render();
};
