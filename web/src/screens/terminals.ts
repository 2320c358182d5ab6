import { Role, TerminalStatus, type Terminal } from "../../../generated/ts/emoney/auth/v1/auth_pb";
import { admin, idOf } from "../api";
import { field, h, input, link, replace, select, table } from "../dom";
import { terminalStatusBadge } from "../enums";
import { t } from "../i18n";
import { collect, PAGE_SIZE, userDirectory } from "../lists";
import { act, card, loading, page, say, shortId, when } from "../ui";
import type { Screen } from "../screen";

export const terminalsScreen: Screen = async (main) => {
  const text = t().terminals;
  replace(main, page(text.title, loading()));
  const merchants = (await userDirectory()).users.filter((user) => user.roles.includes(Role.MERCHANT));
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
          when(terminal.createTime),
          terminal.status === TerminalStatus.ACTIVE ? disableButton(terminal) : "",
        ]),
        text.none,
      ),
    );
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
