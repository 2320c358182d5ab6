import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  AccountKind, AccountStatus, StatementExportState, StatementFormat, type Account, type StatementExport,
} from "../../../generated/ts/emoney/accounts/v1/accounts_pb";
import { accounts, admin, idOf, newRequestId, payments } from "../api";
import { field, h, input, link, replace, select, table } from "../dom";
import { ACCOUNT_KIND_LABELS, ACCOUNT_STATUS_LABELS, accountOfKindLabel, accountStatusBadge, capitalized, filterOptions, fromSlug, paymentKindLabel, slugOf } from "../enums";
import { dateIn, formatNumber, formatSize, LANGUAGES, startOfDay, t } from "../i18n";
import { accountsTable, collect, findUser, holderName, PAGE_SIZE, paymentLink, paymentsTable, refundableMinor } from "../lists";
import { CATALOGUES } from "../messages";
import { amountText, formatMoney, parseAmount } from "../money";
import { act, card, loading, page, say, shortId, since, stat, when } from "../ui";
import { refundForm } from "./payments";
import type { Screen } from "../screen";

export const accountsScreen: Screen = async (main, _params, query) => {
  const text = t().accounts;
  const kind = select("kind", filterOptions(AccountKind, ACCOUNT_KIND_LABELS(), text.allKinds), query.get("kind") ?? "");
  const status = select("status", filterOptions(AccountStatus, ACCOUNT_STATUS_LABELS(), text.anyStatus), query.get("status") ?? "");
  const results = h("div", null, loading());
  const filter = () => {
    const next = new URLSearchParams();
    if (kind.value) next.set("kind", kind.value);
    if (status.value) next.set("status", status.value);
    window.location.hash = `#/accounts${next.size ? "?" + next : ""}`;
  };
  kind.addEventListener("change", filter);
  status.addEventListener("change", filter);
  replace(main, page(text.title, h("div", { class: "toolbar" }, kind, status), results));
  const listed = await collect(async (pageToken) => {
    const answer = await accounts.listAccounts({
      pageSize: PAGE_SIZE,
      pageToken,
      kind: fromSlug<AccountKind>(AccountKind, kind.value),
      status: fromSlug<AccountStatus>(AccountStatus, status.value),
    });
    return { items: answer.accounts, nextPageToken: answer.nextPageToken };
  }, 10);
  replace(results, accountsTable("accounts", listed.items), listed.complete ? null : h("p", { class: "muted" }, text.showingFirst(formatNumber(listed.items.length))));
};

function amountForm(
  testid: string,
  label: string,
  account: Account,
  send: (requestId: string, amountMinor: bigint) => Promise<void>,
): HTMLFormElement {
  const amount = input(`${testid}-amount`, { inputmode: "decimal", placeholder: amountText(0n, account.currency, account.currencyMinorUnits), required: true });
  // One idempotency key per filled-in form: sending the same form twice moves the money once.
  let requestId = newRequestId();
  amount.addEventListener("input", () => (requestId = newRequestId()));
  const form = h(
    "form",
    { class: "inline-form", testid },
    field(t().accounts.amountLabel(label, account.currency), amount),
    h("button", { attrs: { type: "submit" } }, label),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    // `send` redraws the screen with its notice (render(notice) says it as soon as the new screen is up, before
    // the statement and payments load), so nothing is said here after the redraw: a notice said at the end of a
    // slow redraw would replace the error of an action the person started on the new screen meanwhile.
    const ok = await act(form, () => send(requestId, parseAmount(amount.value, account.currency, account.currencyMinorUnits)));
    if (ok) requestId = newRequestId();
  });
  return form;
}

export const accountScreen: Screen = async (main, [accountId]) => {
  const name = `accounts/${accountId}`;
  replace(main, page(t().accounts.account, loading()));
  const settings = tenantSettings(); // read once, alongside the account, not again at every redraw
  const render = async (notice?: string) => {
    const text = t().accounts;
    const [answer, tenant] = await Promise.all([accounts.getAccount({ name }), settings]);
    const account = answer.account!;
    const summary = h("div", { class: "stats" },
      stat(text.balance, formatMoney(account.balanceMinor, account.currency, account.currencyMinorUnits), "account-balance"),
      stat(text.held, formatMoney(account.heldMinor, account.currency, account.currencyMinorUnits), "account-held"),
      stat(text.available, formatMoney(account.availableMinor, account.currency, account.currencyMinorUnits), "account-available"),
      stat(text.status, accountStatusBadge(account.status), "account-status"),
    );
    let owner: HTMLElement | string = text.systemOwner;
    if (account.owner) owner = link(`#/users/${idOf(account.owner)}`, await ownerName(account));
    const actions = h("div", { class: "actions" });
    if (account.status !== AccountStatus.CLOSED && account.kind !== AccountKind.SYSTEM_FLOAT) {
      const frozen = account.status === AccountStatus.FROZEN;
      const toggle = h("button", { class: frozen ? "primary" : "danger", testid: frozen ? "unfreeze" : "freeze" }, frozen ? text.unfreeze : text.freeze);
      toggle.addEventListener("click", () =>
        act(toggle, async () => {
          if (frozen) await accounts.unfreezeAccount({ name });
          else await accounts.freezeAccount({ name });
          await render(frozen ? t().accounts.activeAgain : t().accounts.frozenNow);
        }),
      );
      actions.append(
        toggle,
        amountForm("top-up", text.topUp, account, async (requestId, amountMinor) => {
          await payments.topUp({ requestId, account: name, amountMinor, currency: account.currency });
          await render(t().accounts.toppedUp(formatMoney(amountMinor, account.currency, account.currencyMinorUnits)));
        }),
        amountForm("cash-out", text.cashOut, account, async (requestId, amountMinor) => {
          await payments.withdraw({ requestId, account: name, amountMinor, currency: account.currency });
          await render(t().accounts.paidOut(formatMoney(amountMinor, account.currency, account.currencyMinorUnits)));
        }),
      );
    }
    const statement = h("div", null, loading());
    const history = h("div", null, loading());
    const exporting = h("div", null, loading());
    const holder = account.kind === AccountKind.SYSTEM_FLOAT ? "" : holderName(account);
    replace(
      main,
      page(
        text.accountTitle(capitalized(accountOfKindLabel(account.kind)), holder),
        h(
          "p",
          { class: "muted", testid: "account-owner" },
          text.heldBy, owner, text.ownerLine(account.currency, when(account.createTime)), " · ", h("small", { class: "id", testid: "account-name" }, account.name),
        ),
        summary,
        actions,
        card(text.statement, statement),
        card(text.export.title, exporting),
        card(text.payments, history),
      ),
    );
    if (notice) say("notice", notice);
    renderExport(exporting, account, tenant);
    await Promise.all([renderStatement(statement, account), renderPayments(history, account, render)]);
  };
  await render();
};

async function ownerName(account: Account): Promise<string> {
  const user = await findUser(account.owner);
  return user ? `${user.displayName} <${user.email}>` : account.ownerDisplayName || shortId(account.owner);
}

function periods(): [string, string][] {
  const text = t().accounts.periods;
  return [["30", text.last30], ["7", text.last7], ["365", text.lastYear], ["0", text.everything]];
}

async function renderStatement(container: HTMLElement, account: Account): Promise<void> {
  const period = select("period", periods(), "30");
  const rows = h("div", null, loading());
  const more = h("button", { testid: "statement-more" }, t().app.showMore);
  let pageToken = "";
  const entries: HTMLElement[][] = [];
  const load = async () => {
    const answer = await accounts.listAccountEntries({
      account: account.name,
      pageSize: 50,
      pageToken,
      startTime: since(Number(period.value)),
    });
    for (const entry of answer.entries) {
      entries.push([
        h("span", null, when(entry.createTime)),
        h(
          "span",
          { class: "named" },
          paymentKindLabel(entry.kind),
          entry.description ? h("small", { class: "secondary description", testid: "entry-description" }, entry.description) : null,
        ),
        h("span", null, paymentLink(entry.payment)),
        h("span", { class: entry.amountMinor < 0n ? "money debit" : "money credit" }, formatMoney(entry.amountMinor, account.currency, account.currencyMinorUnits)),
        h("span", { class: "money" }, formatMoney(entry.balanceAfterMinor, account.currency, account.currencyMinorUnits)),
      ]);
    }
    pageToken = answer.nextPageToken;
    replace(rows, table("statement", t().accounts.statementHeadings, entries, t().accounts.noEntries));
    more.hidden = !pageToken;
  };
  period.addEventListener("change", async () => {
    pageToken = "";
    entries.length = 0;
    await act(more, load);
  });
  more.addEventListener("click", () => act(more, load));
  replace(container, h("div", { class: "toolbar" }, period), rows, more);
  await load();
}

async function renderPayments(container: HTMLElement, account: Account, rerender: (notice?: string) => Promise<void>): Promise<void> {
  const answer = await payments.listPayments({ account: account.name, pageSize: 20 });
  replace(
    container,
    paymentsTable("account-payments", answer.payments, (payment) =>
      refundableMinor(payment) > 0n
        ? refundForm(payment, async (refund) => rerender(t().accounts.refunded(formatMoney(refund.amountMinor, refund.currency))))
        : null,
    ),
    answer.nextPageToken ? h("p", null, link(`#/payments?account=${idOf(account.name)}`, t().accounts.allPaymentsOfAccount)) : null,
  );
}

const EXPORT_POLL_MS = 500;
const MAX_EXPORT_DAYS = 366;
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/** The tenant's time zone and language (ListIdentityLevels answers both); none when it cannot be read. */
interface TenantSettings {
  timeZone?: string;
  language?: string;
}

async function tenantSettings(): Promise<TenantSettings> {
  try {
    const answer = await admin.listIdentityLevels({});
    return { timeZone: answer.timeZone || undefined, language: answer.language || undefined };
  } catch {
    return {};
  }
}

/** The statement as a document to keep: a period (the current month to begin with, days in the tenant's time
 * zone), CSV or PDF, written in the background (ExportStatement), its progress read every half second
 * (GetStatementExport) until it is written — then a download link — or failed. */
function renderExport(container: HTMLElement, account: Account, { timeZone, language: tenantLanguage }: TenantSettings): void {
  const text = t().accounts.export;
  const today = dateIn(new Date(), timeZone);
  const [year, month] = today.split("-").map(Number);
  const lastDay = new Date(Date.UTC(year, month, 0)).getUTCDate();
  const monthPrefix = today.slice(0, 8);
  const from = input("export-from", { type: "date", value: `${monthPrefix}01`, required: true });
  const until = input("export-until", { type: "date", value: `${monthPrefix}${String(lastDay).padStart(2, "0")}`, required: true });
  const format = select("export-format", [StatementFormat.PDF, StatementFormat.CSV].map((value): [string, string] => [slugOf(StatementFormat, value), text.formats[value]]));
  const tenantLanguageName = tenantLanguage && Object.hasOwn(CATALOGUES, tenantLanguage) ? CATALOGUES[tenantLanguage as keyof typeof CATALOGUES].app.languageName : "";
  const documentLanguage = select("export-language", [
    ["", tenantLanguageName ? text.tenantLanguage(tenantLanguageName) : "—"],
    ...LANGUAGES.map((option): [string, string] => [option, CATALOGUES[option].app.languageName]),
  ]);
  const status = h("div", { class: "export-status", testid: "export-status", attrs: { "aria-live": "polite" } });
  const form = h(
    "form",
    { class: "inline-form", testid: "export-statement" },
    field(text.from, from),
    field(text.until, until),
    field(text.format, format),
    field(text.language, documentLanguage),
    h("button", { attrs: { type: "submit" } }, text.start),
  );
  const show = (statementExport: StatementExport) => {
    const state = statementExport.state;
    const parts: HTMLElement[] = [h("span", { testid: "export-state", attrs: { "data-state": slugOf(StatementExportState, state) } }, text.states[state] ?? "")];
    if (state === StatementExportState.RUNNING || state === StatementExportState.PENDING) {
      const total = Math.max(statementExport.entriesTotal, 0);
      const progress = h("progress", { attrs: { max: String(Math.max(total, 1)), value: String(Math.min(statementExport.entriesDone, total)) } });
      parts.push(progress, h("span", { class: "muted" }, text.progress(formatNumber(statementExport.entriesDone), formatNumber(total))));
    } else if (state === StatementExportState.SUCCEEDED && statementExport.downloadUrl) {
      const formatName = statementExport.format === StatementFormat.CSV ? "CSV" : "PDF";
      parts.push(
        h(
          "a",
          { class: "download", testid: "export-download", attrs: { href: statementExport.downloadUrl, target: "_blank", rel: "noopener noreferrer" } },
          text.download(formatName, formatSize(statementExport.sizeBytes)),
        ),
        h("small", { class: "muted" }, text.validUntil(when(statementExport.downloadUrlExpireTime))),
      );
    } else if (state === StatementExportState.FAILED && statementExport.error) {
      parts.push(h("span", { class: "muted", testid: "export-error" }, `(${statementExport.error})`));
    }
    replace(status, ...parts);
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    replace(status);
    await act(form, async () => {
      const startMs = startOfDay(from.value, timeZone);
      const endMs = startOfDay(until.value, timeZone, 1);
      // At most 366 days (the server's bound), an hour or two more where a daylight saving change falls inside.
      if (!(endMs > startMs) || endMs - startMs > MAX_EXPORT_DAYS * DAY_MS + 2 * HOUR_MS) throw new Error(text.badPeriod);
      const started = (await accounts.exportStatement({
        account: account.name,
        startTime: timestampFromMs(startMs),
        endTime: timestampFromMs(endMs),
        format: fromSlug<StatementFormat>(StatementFormat, format.value),
        language: documentLanguage.value,
      })).statementExport!;
      show(started);
      let current = started;
      while (container.isConnected && current.state !== StatementExportState.SUCCEEDED && current.state !== StatementExportState.FAILED) {
        await new Promise((resolve) => setTimeout(resolve, EXPORT_POLL_MS));
        if (!container.isConnected) return; // the page was left: stop asking
        current = (await accounts.getStatementExport({ name: started.name })).statementExport!;
        show(current);
      }
    });
  });
  replace(container, form, timeZone ? h("p", { class: "muted" }, text.zone(timeZone)) : null, status);
}
