// Payments as they commit: the server stream WatchPayments over grpc-web, reconnecting by itself.
import { Code, ConnectError } from "@connectrpc/connect";
import type { Payment, PaymentEventType } from "../../../generated/ts/emoney/payments/v1/payments_pb";
import { payments } from "../api";
import { h, replace } from "../dom";
import { paymentEventBadge, paymentKindLabel } from "../enums";
import { describeError } from "../errors";
import { partyLink, paymentLink } from "../lists";
import { t } from "../i18n";
import { formatMoney } from "../money";
import { page, when } from "../ui";
import type { Screen } from "../screen";

const MAX_ROWS = 200;
const RETRY_DELAYS_MS = [1_000, 2_000, 5_000, 10_000];

function row(event: PaymentEventType, payment: Payment): HTMLElement {
  return h(
    "tr",
    { class: "fresh", testid: "live-event", attrs: { "data-payment": payment.name } },
    h("td", null, when(payment.createTime)),
    h("td", null, paymentEventBadge(event)),
    h("td", null, paymentKindLabel(payment.kind)),
    h("td", null, paymentLink(payment.name)),
    // Names where the event carries them (WatchPayments' events carry none today: the accounts' short ids then).
    h("td", null, partyLink(payment, "from")),
    h("td", null, partyLink(payment, "to")),
    h("td", { class: "money" }, formatMoney(payment.amountMinor, payment.currency)),
  );
}

export const liveScreen: Screen = async (main) => {
  const text = t().live;
  const state = h("span", { class: "live-state", testid: "live-state" }, text.connecting);
  const body = h("tbody", { testid: "live-events" });
  const events = h(
    "table",
    { testid: "live-table" },
    h("thead", null, h("tr", null, text.headings.map((heading) => h("th", null, heading)))),
    body,
  );
  const empty = h("p", { class: "empty", testid: "live-empty" }, text.waiting);
  replace(main, page(text.title, h("p", null, text.status, state), empty, h("div", { class: "table-scroll" }, events)));

  const stop = new AbortController();
  const watch = async () => {
    for (let attempt = 0; !stop.signal.aborted; attempt++) {
      try {
        state.textContent = text.connecting;
        // The server sends the stream's headers once it has subscribed: from then on nothing is missed.
        const stream = payments.watchPayments({}, {
          signal: stop.signal,
          timeoutMs: 0,
          onHeader: () => {
            state.textContent = text.live;
            state.className = "live-state on";
          },
        });
        for await (const update of stream) {
          if (!update.payment) continue;
          attempt = 0;
          empty.hidden = true;
          body.prepend(row(update.event, update.payment));
          while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
        }
      } catch (error) {
        if (stop.signal.aborted || (error instanceof ConnectError && error.code === Code.Canceled)) return;
        state.className = "live-state off";
        state.textContent = text.interrupted(describeError(error).message);
        if (error instanceof ConnectError && (error.code === Code.Unauthenticated || error.code === Code.PermissionDenied)) return;
      }
      const delay = RETRY_DELAYS_MS[Math.min(attempt, RETRY_DELAYS_MS.length - 1)];
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  };
  void watch();
  return () => stop.abort();
};
