import type { AuditEvent } from "../../../generated/ts/emoney/admin/v1/admin_pb";
import { admin, idOf } from "../api";
import { actionLabel, changeView } from "../audit";
import { h, input, link, replace, select, table } from "../dom";
import { formatNumber, t } from "../i18n";
import { act, card, loading, page, since, when } from "../ui";
import type { Screen } from "../screen";

const AUDIT_PAGE_SIZE = 50;

function auditPeriods(): [string, string][] {
  const text = t().audit.periods;
  return [["0", text.any], ["1", text.day], ["7", text.week], ["30", text.month]];
}

function actorCell(actor: string): HTMLElement | string {
  if (actor.startsWith("users/")) return link(`#/users/${idOf(actor)}`, actor);
  return actor === "system" ? t().audit.system : actor;
}

/** The action in words, the full method name on hover. */
function actionCell(event: AuditEvent): HTMLElement {
  return h("span", { class: "audit-action", testid: "audit-action", attrs: { title: event.method } }, actionLabel(event.method, event.summaryJson));
}

/** The record as stored, folded away: the summary's JSON, the chain position and the hash. */
function recordCell(event: AuditEvent): HTMLElement {
  const text = t().audit;
  return h(
    "details",
    { class: "audit-record", testid: "audit-record" },
    h("summary", null, text.record, " ", h("code", null, event.hashHex.slice(0, 12))),
    h("div", { class: "muted" }, text.chain(String(event.stripe), String(event.sequence))),
    h("div", null, text.hash, ": ", h("code", { class: "hash", testid: "audit-hash" }, event.hashHex)),
    h("div", null, text.rawSummary, ":"),
    h("code", { class: "summary", testid: "audit-summary-json" }, event.summaryJson),
  );
}

function auditTable(events: AuditEvent[], filtered: boolean): HTMLElement {
  const text = t().audit;
  return table(
    "audit-events",
    text.headings,
    events.map((event) => [
      when(event.createTime),
      actorCell(event.actor),
      actionCell(event),
      h("div", { class: "audit-change", testid: "audit-change" }, changeView(event.summaryJson)),
      h("code", null, event.requestId),
      recordCell(event),
    ]),
    filtered ? text.noMatch : text.none,
  );
}

/** The newest audit events, filtered by actor, request id and period (kept in the address), paged. */
function auditEventsCard(query: URLSearchParams): { element: HTMLElement; load: () => Promise<void> } {
  const text = t().audit;
  const actor = input("audit-actor", { value: query.get("actor") ?? "", placeholder: text.actorPlaceholder, maxlength: "200", size: "30" });
  const requestId = input("audit-request-id", { value: query.get("requestId") ?? "", placeholder: text.requestIdPlaceholder, maxlength: "100", size: "24" });
  const period = select("audit-period", auditPeriods(), query.get("period") ?? "0");
  const filters = h("form", { class: "toolbar", testid: "audit-filters" }, actor, requestId, period, h("button", { attrs: { type: "submit" } }, text.filter));
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    if (actor.value.trim()) next.set("actor", actor.value.trim());
    if (requestId.value.trim()) next.set("requestId", requestId.value.trim());
    if (period.value !== "0") next.set("period", period.value);
    const query = next.toString();
    window.location.hash = query ? `#/audit?${query}` : "#/audit";
  });
  const results = h("div", null, loading());
  const more = h("button", { testid: "audit-more" }, text.showOlder);
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
  return { element: card(text.events, filters, results, more), load };
}

export const auditScreen: Screen = async (main, _params, query) => {
  const text = t().audit;
  const events = auditEventsCard(query);
  const result = h("div", { testid: "audit-result" });
  const verify = h("button", { class: "primary", testid: "verify-audit" }, text.verify);
  verify.addEventListener("click", () =>
    act(verify, async () => {
      const answer = await admin.verifyAuditChain({});
      replace(
        result,
        h(
          "p",
          { class: answer.ok ? "verdict ok" : "verdict broken", testid: "audit-verdict" },
          answer.ok
            ? text.intact(formatNumber(answer.eventsChecked), formatNumber(answer.stripesChecked))
            : text.broken(formatNumber(answer.brokenLinks.length), formatNumber(answer.eventsChecked)),
        ),
        answer.brokenLinks.length
          ? table("broken-links", text.brokenHeadings, answer.brokenLinks.map((link) => [
              String(link.stripe), formatNumber(link.sequence), link.problem, when(link.createTime)]), t().app.nothing)
          : null,
      );
    }),
  );
  replace(
    main,
    page(
      text.title,
      h("p", null, text.intro),
      events.element,
      card(text.verification, verify, result),
    ),
  );
  await events.load();
};

export const reconciliationScreen: Screen = async (main) => {
  const text = t().reconciliation;
  const result = h("div", { testid: "reconciliation-result" });
  const run = h("button", { class: "primary", testid: "reconcile" }, text.run);
  run.addEventListener("click", () =>
    act(run, async () => {
      const answer = await admin.reconcileLedger({});
      replace(
        result,
        h(
          "p",
          { class: answer.ok ? "verdict ok" : "verdict broken", testid: "reconciliation-verdict" },
          answer.ok ? text.balanced : text.discrepancies(formatNumber(answer.discrepancies.length), answer.truncated),
        ),
        h("p", { class: "muted" }, text.checked(
          formatNumber(answer.accountsChecked), formatNumber(answer.transfersChecked), formatNumber(answer.entriesChecked), when(answer.checkTime))),
        answer.discrepancies.length
          ? table("discrepancies", text.headings, answer.discrepancies.map((item) => [
              item.check, item.subject, text.minorUnits(formatNumber(item.expectedMinor)), text.minorUnits(formatNumber(item.actualMinor))]),
              t().app.nothing)
          : null,
      );
    }),
  );
  replace(
    main,
    page(
      text.title,
      h("p", null, text.intro),
      card(null, run, result),
    ),
  );
};
