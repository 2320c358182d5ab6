// The tenant's identity levels (its know-your-customer ladder, each level's limits per currency) and its time
// zone and language. Everyone in the back office reads them (ListIdentityLevels); only a tenant administrator
// changes them (SetIdentityLevel, UpdateTenantSettings), so an operator sees no forms.
import type { IdentityLevel, LevelLimits } from "../../../generated/ts/emoney/admin/v1/admin_pb";
import { Role } from "../../../generated/ts/emoney/auth/v1/auth_pb";
import { admin, currentSession } from "../api";
import { field, h, input, replace, select, table, type Child } from "../dom";
import { formatNumber, LANGUAGES, t } from "../i18n";
import { tenantCurrency } from "../lists";
import { CATALOGUES, type Language } from "../messages";
import { amountText, formatMoney, parseLimit } from "../money";
import { act, card, loading, page, say } from "../ui";
import type { Screen } from "../screen";

/** The limits of a level in one currency, in the order of the table's columns and the form's fields. */
const LIMITS = [
  ["maxBalance", "maxBalanceMinor"],
  ["maxPayment", "maxPaymentMinor"],
  ["dailySent", "dailySentMinor"],
  ["dailyReceived", "dailyReceivedMinor"],
  ["monthlySent", "monthlySentMinor"],
  ["monthlyReceived", "monthlyReceivedMinor"],
] as const;

type LimitKey = (typeof LIMITS)[number][0];
type LimitField = (typeof LIMITS)[number][1];

function isTenantAdmin(): boolean {
  return currentSession()?.user.roles.includes(Role.TENANT_ADMIN) ?? false;
}

function languageName(code: string): string {
  return Object.hasOwn(CATALOGUES, code) ? CATALOGUES[code as Language].app.languageName : code;
}

function limitText(amount: bigint | undefined, currency: string): Child {
  return amount === undefined ? h("span", { class: "muted no-limit" }, t().levels.noLimit) : h("span", { class: "money" }, formatMoney(amount, currency));
}

/** One row per level and currency; a level's rank, code and name only on its first row. */
function ladderTable(levels: IdentityLevel[], edit: ((level: IdentityLevel) => void) | null): HTMLElement {
  const text = t().levels;
  const headings = edit ? text.headings : text.headings.slice(0, -1);
  const rows: Child[][] = levels.flatMap((level, index) => {
    const editButton = edit ? h("button", { class: "small", testid: "edit-level", attrs: { type: "button", "data-level": level.code } }, text.edit) : null;
    editButton?.addEventListener("click", () => edit!(level));
    const head: Child[] = [
      formatNumber(level.rank),
      h("code", { testid: "level-code" }, level.code),
      h("span", { class: "named", testid: "level-name" }, level.displayName, index === 0 ? h("small", { class: "secondary" }, text.lowest) : null),
    ];
    const blank: Child[] = ["", "", ""];
    if (level.limits.length === 0) {
      const row: Child[] = [...head, h("span", { class: "muted" }, text.noCurrencies), "", "", "", "", "", ""];
      return [edit ? [...row, editButton] : row];
    }
    return level.limits.map((limits, line) => {
      const row: Child[] = [
        ...(line === 0 ? head : blank),
        h("code", null, limits.currency),
        ...LIMITS.map(([, key]) => limitText(limits[key], limits.currency)),
      ];
      return edit ? [...row, line === 0 ? editButton : ""] : row;
    });
  });
  return table("levels", headings, rows, text.none);
}

/** The time zone and the language; for an administrator, the form that changes them. */
function settingsView(timeZone: string, language: string, saved: (notice: string) => Promise<void>): HTMLElement {
  const text = t().levels;
  const shown = h(
    "dl",
    { class: "settings", testid: "tenant-settings" },
    h("dt", null, text.timeZone), h("dd", { testid: "tenant-time-zone" }, timeZone || "—"),
    h("dt", null, text.language), h("dd", { testid: "tenant-language" }, languageName(language) || "—"),
  );
  if (!isTenantAdmin()) return shown;
  const zones = Intl.supportedValuesOf("timeZone");
  if (!zones.includes("UTC")) zones.unshift("UTC");
  const zone = input("time-zone", { value: timeZone, list: "time-zones", required: true, autocomplete: "off", size: "24" });
  const languages = select("tenant-language", LANGUAGES.map((option): [string, string] => [option, CATALOGUES[option].app.languageName]), language);
  const form = h(
    "form",
    { class: "inline-form", testid: "settings-form" },
    field(text.timeZone, zone, text.timeZoneHint),
    field(text.language, languages, text.languageHint),
    h("datalist", { attrs: { id: "time-zones" } }, zones.map((name) => h("option", { attrs: { value: name } }))),
    h("button", { attrs: { type: "submit" } }, text.saveSettings),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await act(form, async () => {
      await admin.updateTenantSettings({ timeZone: zone.value.trim(), language: languages.value });
      await saved(t().levels.settingsSaved);
    });
  });
  return h("div", null, shown, form);
}

/** One currency's limits in the level form: the currency and an amount per limit, empty for no limit. */
function currencyRow(index: number, currency: string, limits: LevelLimits | undefined, remove: (row: HTMLElement) => void): HTMLElement {
  const text = t().levels;
  const code = input(`limit-${index}-currency`, { value: currency, required: true, size: "4", maxlength: "3", autocomplete: "off" });
  const amounts = LIMITS.map(([name, key]) => {
    const amount = limits?.[key];
    return field(text.limitNames[name], input(`limit-${index}-${name}`, {
      inputmode: "decimal", size: "10", placeholder: text.noLimit, "data-limit": name,
      value: amount === undefined ? "" : amountText(amount, currency),
    }));
  });
  const removeButton = h("button", { class: "small", attrs: { type: "button" }, testid: "remove-currency" }, text.removeCurrency);
  const row = h("fieldset", { class: "currency-limits", testid: "currency-limits" }, field(text.currency, code), ...amounts, removeButton);
  removeButton.addEventListener("click", () => remove(row));
  return row;
}

/** The limits typed into one currency row, parsed with that currency's decimals. */
function limitsOf(row: HTMLElement): LevelLimits | null {
  const currency = (row.querySelector<HTMLInputElement>("input[name$='-currency']")?.value ?? "").trim().toUpperCase();
  const typed = Array.from(row.querySelectorAll<HTMLInputElement>("input[data-limit]"));
  if (!currency && typed.every((amount) => !amount.value.trim())) return null; // an empty row: left out
  const limits: Partial<Record<LimitField, bigint>> = {};
  for (const amount of typed) {
    const key = LIMITS.find(([name]) => name === (amount.dataset.limit as LimitKey))?.[1];
    const value = parseLimit(amount.value, currency);
    if (key && value !== undefined) limits[key] = value;
  }
  return { currency, ...limits } as LevelLimits;
}

/** The form that creates a level or, filled with one, replaces it (by its code). */
function levelForm(editing: IdentityLevel | null, defaultCurrency: string, levels: IdentityLevel[], saved: (notice: string) => Promise<void>): HTMLElement {
  const text = t().levels;
  const code = input("level-code", { value: editing?.code ?? "", required: true, maxlength: "32", pattern: "[a-z][a-z0-9_]{0,31}", autocomplete: "off" });
  const name = input("level-name", { value: editing?.displayName ?? "", required: true, maxlength: "100" });
  const nextRank = levels.length ? Math.min(1000, Math.max(...levels.map((level) => level.rank)) + 10) : 0;
  const rank = input("level-rank", { type: "number", min: "0", max: "1000", step: "1", required: true, value: String(editing?.rank ?? nextRank) });
  const rows = h("div", { class: "currency-rows" });
  let counter = 0;
  const remove = (row: HTMLElement) => row.remove();
  const addRow = (currency: string, limits?: LevelLimits) => rows.append(currencyRow(counter++, currency, limits, remove));
  if (editing && editing.limits.length) editing.limits.forEach((limits) => addRow(limits.currency, limits));
  else addRow(defaultCurrency);
  const add = h("button", { attrs: { type: "button" }, testid: "add-currency" }, text.addCurrency);
  add.addEventListener("click", () => addRow(""));
  const form = h(
    "form",
    { class: "level-form", testid: "level-form" },
    h("div", { class: "inline-form" }, field(text.code, code, text.codeHint), field(text.name, name), field(text.rank, rank, text.rankHint)),
    h("h3", null, text.limits),
    h("p", { class: "muted" }, text.limitsHint),
    rows,
    h("div", { class: "actions" }, add, h("button", { class: "primary", attrs: { type: "submit" } }, text.save)),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await act(form, async () => {
      const limits = Array.from(rows.children, (row) => limitsOf(row as HTMLElement)).filter((row): row is LevelLimits => row !== null);
      const answer = await admin.setIdentityLevel({
        identityLevel: { code: code.value.trim(), displayName: name.value.trim(), rank: Number(rank.value), limits },
      });
      await saved(t().levels.saved(answer.identityLevel?.displayName ?? name.value.trim()));
    });
  });
  return form;
}

export const levelsScreen: Screen = async (main) => {
  replace(main, page(t().levels.title, loading()));
  const render = async (notice?: string, editing: IdentityLevel | null = null) => {
    const text = t().levels;
    const [answer, currency] = await Promise.all([admin.listIdentityLevels({}), isTenantAdmin() ? tenantCurrency() : Promise.resolve("")]);
    const levels = answer.identityLevels;
    const formCard = h("div", { testid: "level-form-card" });
    const showForm = (level: IdentityLevel | null) => {
      replace(
        formCard,
        card(
          level ? text.editLevel(level.displayName) : text.newLevel,
          levelForm(level, currency, levels, (done) => render(done)),
          level ? h("button", { class: "link-like", attrs: { type: "button" }, on: { click: () => showForm(null) } }, text.startOver) : null,
        ),
      );
    };
    const canChange = isTenantAdmin();
    replace(
      main,
      page(
        text.title,
        h("p", { class: "muted" }, text.intro),
        canChange ? null : h("p", { class: "muted", testid: "admins-only" }, text.adminsOnly),
        card(text.ladder, ladderTable(levels, canChange ? (level) => {
          showForm(level);
          formCard.scrollIntoView({ block: "start" });
        } : null)),
        canChange ? formCard : null,
        card(text.settings, settingsView(answer.timeZone, answer.language, (done) => render(done))),
      ),
    );
    if (canChange) showForm(editing);
    if (notice) say("notice", notice);
  };
  await render();
};
