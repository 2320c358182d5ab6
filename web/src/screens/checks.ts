import { admin } from "../api";
import { h, replace, table } from "../dom";
import { act, card, page, when } from "../ui";
import type { Screen } from "../main";

export const auditScreen: Screen = async (main) => {
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
      h("p", { class: "muted" }, "The API offers verification only; reading individual audit events is not part of it yet."),
      card(null, verify, result),
    ),
  );
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
