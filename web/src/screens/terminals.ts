import { Role, TerminalStatus, type Terminal } from "../../../generated/ts/emoney/auth/v1/auth_pb";
import { admin, idOf } from "../api";
import { field, h, input, link, replace, select, table } from "../dom";
import { terminalStatusBadge } from "../enums";
import { t } from "../i18n";
import { collect, PAGE_SIZE, tenantCurrency, userDirectory } from "../lists";
import { amountText, formatMoney, parseLimit } from "../money";
import { act, card, loading, page, say, shortId, when } from "../ui";
import type { Screen } from "../screen";

export const terminalsScreen: Screen = async (main) => {
  const text = t().terminals;
  replace(main, page(text.title, loading()));
  const [directory, currency] = await Promise.all([userDirectory(), tenantCurrency()]);
  const merchants = directory.users.filter((user) => user.roles.includes(Role.MERCHANT));
  const merchantNames = new Map(merchants.map((user) => [user.name, user.displayName]));
  const list = h("div", null, loading());
  const secret = h("div", { testid: "terminal-secret-area" });

  const render = async () => {
    const terminals = await collect(async (pageToken) => {
      const answer = await admin.listTerminals({ pageSize: PAGE_SIZE, pageToken });
      return { items: answer.terminals, nextPageToken: answer.nextPageToken };
    }, 20);
    replace(
      list,
      table(
        "terminals",
        text.headings,
        terminals.items.map((terminal: Terminal) => [
          terminal.displayName,
          link(`#/users/${idOf(terminal.merchant)}`, merchantNames.get(terminal.merchant) ?? shortId(terminal.merchant)),
          h("code", null, terminal.clientId),
          terminalStatusBadge(terminal.status),
          limitCell(terminal),
          when(terminal.createTime),
          terminal.status === TerminalStatus.ACTIVE ? disableButton(terminal) : "",
        ]),
        text.none,
      ),
    );
  };

  // The daily charge limit: counted in each currency the terminal charges in; shown and typed in the tenant's.
  const limitCell = (terminal: Terminal) => {
    const limit = terminal.dailyChargeLimitMinor;
    const shown = h(
      "span",
      { class: limit === undefined ? "muted" : "money", testid: "terminal-limit" },
      limit === undefined ? text.noLimit : formatMoney(limit, currency),
    );
    if (terminal.status !== TerminalStatus.ACTIVE) return shown;
    const amount = input(`limit-${idOf(terminal.name)}`, {
      inputmode: "decimal", size: "8", required: true, placeholder: amountText(0n, currency), value: limit === undefined ? "" : amountText(limit, currency),
      "aria-label": text.limitAmount(terminal.displayName, currency),
    });
    const form = h("form", { class: "limit-form", testid: "terminal-limit-form" }, amount, h("button", { class: "small", attrs: { type: "submit" }, testid: "set-terminal-limit" }, text.setLimit));
    const set = async (limitMinor: bigint | undefined) => {
      await admin.setTerminalLimit({ terminal: terminal.name, dailyChargeLimitMinor: limitMinor });
      await render();
      say("notice", limitMinor === undefined ? text.limitRemoved(terminal.displayName) : text.limitSet(terminal.displayName, formatMoney(limitMinor, currency)));
    };
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      await act(form, () => set(parseLimit(amount.value, currency)));
    });
    if (limit !== undefined) {
      const remove = h("button", { class: "small", attrs: { type: "button" }, testid: "remove-terminal-limit" }, text.removeLimit);
      remove.addEventListener("click", () => act(remove, () => set(undefined)));
      form.append(remove);
    }
    return h("div", { class: "limit-cell" }, shown, form);
  };

  const disableButton = (terminal: Terminal) => {
    const button = h("button", { class: "danger", testid: "disable-terminal" }, text.disable);
    button.addEventListener("click", async () => {
      if (!window.confirm(text.confirmDisable(terminal.displayName))) return;
      await act(button, async () => {
        await admin.disableTerminal({ name: terminal.name });
        await render();
        say("notice", text.disabled(terminal.displayName));
      });
    });
    return button;
  };

  const merchant = select("merchant", merchants.map((user) => [user.name, `${user.displayName} <${user.email}>`]));
  const displayName = input("terminal-name", { required: true, maxlength: "200", placeholder: text.namePlaceholder });
  const register = h("form", { class: "inline-form", testid: "register-terminal" }, field(text.merchant, merchant), field(text.name, displayName), h("button", { attrs: { type: "submit" } }, text.register));
  register.addEventListener("submit", async (event) => {
    event.preventDefault();
    await act(register, async () => {
      const answer = await admin.registerTerminal({ merchant: merchant.value, displayName: displayName.value.trim() });
      displayName.value = "";
      // The secret exists only in this answer (the server keeps its hash): show it this once.
      replace(
        secret,
        h(
          "div",
          { class: "secret", testid: "terminal-secret" },
          h("strong", null, text.writeDown),
          h("div", null, text.clientId, h("code", null, answer.terminal!.clientId)),
          h("div", null, text.clientSecret, h("code", { testid: "client-secret" }, answer.clientSecret)),
        ),
      );
      await render();
    });
  });
  replace(
    main,
    page(
      text.title,
      list,
      card(text.registerCard, merchants.length ? register : h("p", null, text.createMerchantFirst), secret),
    ),
  );
  await render();
};
