import type { AuditEvent } from "../../../generated/ts/emoney/admin/v1/admin_pb";
import { admin, idOf } from "../api";
import { h, input, link, replace, select, table } from "../dom";
import { act, card, loading, page, since, when } from "../ui";
import type { Screen } from "../screen";

const AUDIT_PAGE_SIZE = 50;
const AUDIT_PERIODS: [string, string][] = [["0", "Any time"], ["1", "Last 24 hours"], ["7", "Last 7 days"], ["30", "Last 30 days"]];

function actorCell(actor: string): HTMLElement | string {
  return actor.startsWith("users/") ? link(`#/users/${idOf(actor)}`, actor) : actor;
}

/** `/emoney.accounts.v1.AccountsService/FreezeAccount` → `FreezeAccount` (the full name on hover). */
function methodCell(method: string): HTMLElement {
  return h("span", { attrs: { title: method } }, method.slice(method.lastIndexOf("/") + 1));
}

function auditTable(events: AuditEvent[], filtered: boolean): HTMLElement {
  return table(
    "audit-events",
    ["When", "Actor", "Action", "Request id", "Change", "Chain", "Hash"],
    events.map((event) => [
      when(event.createTime),
      actorCell(event.actor),
      methodCell(event.method),
      h("code", null, event.requestId),
      h("code", { class: "summary" }, event.summaryJson),
      `${event.stripe} #${event.sequence}`,
      h("code", { attrs: { title: event.hashHex } }, event.hashHex.slice(0, 12)),
    ]),
    filtered ? "No audit event matches." : "No audit events yet.",
  );
}

/** The newest audit events, filtered by actor, request id and period (kept in the address), paged. */
function auditEventsCard(query: URLSearchParams): { element: HTMLElement; load: () => Promise<void> } {
  const actor = input("audit-actor", { value: query.get("actor") ?? "", placeholder: "Actor, e.g. users/…", maxlength: "200", size: "30" });
  const requestId = input("audit-request-id", { value: query.get("requestId") ?? "", placeholder: "Request id", maxlength: "100", size: "24" });
  const period = select("audit-period", AUDIT_PERIODS, query.get("period") ?? "0");
  const filters = h("form", { class: "toolbar", testid: "audit-filters" }, actor, requestId, period, h("button", { attrs: { type: "submit" } }, "Filter"));
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    if (actor.value.trim()) next.set("actor", actor.value.trim());
    if (requestId.value.trim()) next.set("requestId", requestId.value.trim());
    if (period.value !== "0") next.set("period", period.value);
    const text = next.toString();
    window.location.hash = text ? `#/audit?${text}` : "#/audit";
  });
  const results = h("div", null, loading());
  const more = h("button", { testid: "audit-more" }, "Show older");
  more.hidden = true;
  const shown: AuditEvent[] = [];
  let pageToken = "";
  const load = async () => {
    const days = Number(period.value);
    const answer = await admin.listAuditEvents({
      pageSize: AUDIT_PAGE_SIZE,
      pageToken,
      actor: actor.value.trim(),
      requestId: requestId.value.trim(),
      startTime: since(days),
    });
    shown.push(...answer.auditEvents);
    pageToken = answer.nextPageToken;
    more.hidden = !pageToken;
    replace(results, auditTable(shown, Boolean(actor.value.trim() || requestId.value.trim() || days)));
  };
  more.addEventListener("click", () => act(more, load));
  return { element: card("Events, newest first", filters, results, more), load };
}

export const auditScreen: Screen = async (main, _params, query) => {
  const events = auditEventsCard(query);
  const result = h("div", { testid: "audit-result" });
  const verify = h("button", { class: "primary", testid: "verify-audit" }, "Verify the audit chains");
  verify.addEventListener("click", () =>
    act(verify, async () => {
      const answer = await admin.verifyAuditChain({});
      replace(
        result,
        h(
          "p",
          { class: answer.ok ? "verdict ok" : "verdict broken", testid: "audit-verdict" },
          answer.ok
            ? `Intact: ${answer.eventsChecked} events in ${answer.stripesChecked} chains, every link checks out.`
            : `Broken: ${answer.brokenLinks.length} link(s) do not check out (of ${answer.eventsChecked} events).`,
        ),
        answer.brokenLinks.length
          ? table("broken-links", ["Chain", "Sequence", "Problem", "Recorded"], answer.brokenLinks.map((link) => [
              String(link.stripe), String(link.sequence), link.problem, when(link.createTime)]))
          : null,
      );
    }),
  );
  replace(
    main,
    page(
      "Audit log",
      h("p", null, "Every change (who, what, when, request id) is appended to hash-chained audit records that nobody can edit. ",
        "Verification recomputes every link of this organisation's chains."),
      events.element,
      card("Chain verification", verify, result),
    ),
  );
  await events.load();
};

export const reconciliationScreen: Screen = async (main) => {
  const result = h("div", { testid: "reconciliation-result" });
  const run = h("button", { class: "primary", testid: "reconcile" }, "Reconcile the ledger");
  run.addEventListener("click", () =>
    act(run, async () => {
      const answer = await admin.reconcileLedger({});
      replace(
        result,
        h(
          "p",
          { class: answer.ok ? "verdict ok" : "verdict broken", testid: "reconciliation-verdict" },
          answer.ok ? "Balanced: every check passed." : `${answer.discrepancies.length} discrepancies found${answer.truncated ? " (list cut short)" : ""}.`,
        ),
        h("p", { class: "muted" }, `${answer.accountsChecked} accounts, ${answer.transfersChecked} transfers, ${answer.entriesChecked} entries checked at ${when(answer.checkTime)}.`),
        answer.discrepancies.length
          ? table("discrepancies", ["Check", "Subject", "Expected", "Actual"], answer.discrepancies.map((item) => [
              item.check, item.subject, `${item.expectedMinor} minor units`, `${item.actualMinor} minor units`]))
          : null,
      );
    }),
  );
  replace(
    main,
    page(
      "Ledger reconciliation",
      h("p", null, "Checks that every transfer's entries sum to zero, that each currency balances across the organisation, ",
        "that stored balances equal the sum of their entries and that holds and refunds add up."),
      card(null, run, result),
    ),
  );
};
