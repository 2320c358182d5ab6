import { Role, TerminalStatus, type Terminal } from "../../../generated/ts/emoney/auth/v1/auth_pb";
import { admin, idOf } from "../api";
import { field, h, input, link, replace, select, table } from "../dom";
import { terminalStatusBadge } from "../enums";
import { collect, PAGE_SIZE, userDirectory } from "../lists";
import { act, card, loading, page, say, shortId, when } from "../ui";
import type { Screen } from "../screen";

export const terminalsScreen: Screen = async (main) => {
  replace(main, page("Terminals", loading()));
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
        ["Terminal", "Merchant", "Client id", "Status", "Registered", ""],
        terminals.items.map((terminal: Terminal) => [
          terminal.displayName,
          link(`#/users/${idOf(terminal.merchant)}`, merchantNames.get(terminal.merchant) ?? shortId(terminal.merchant)),
          h("code", null, terminal.clientId),
          terminalStatusBadge(terminal.status),
          when(terminal.createTime),
          terminal.status === TerminalStatus.ACTIVE ? disableButton(terminal) : "",
        ]),
        "No terminals yet.",
      ),
    );
  };

  const disableButton = (terminal: Terminal) => {
    const button = h("button", { class: "danger", testid: "disable-terminal" }, "Disable");
    button.addEventListener("click", async () => {
      if (!window.confirm(`Disable “${terminal.displayName}”? It is signed out at once and cannot be enabled again.`)) return;
      await act(button, async () => {
        await admin.disableTerminal({ name: terminal.name });
        await render();
        say("notice", `“${terminal.displayName}” is disabled.`);
      });
    });
    return button;
  };

  const merchant = select("merchant", merchants.map((user) => [user.name, `${user.displayName} <${user.email}>`]));
  const displayName = input("terminal-name", { required: true, maxlength: "200", placeholder: "Bakery till 2" });
  const register = h("form", { class: "inline-form", testid: "register-terminal" }, field("Merchant", merchant), field("Name", displayName), h("button", { attrs: { type: "submit" } }, "Register"));
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
          h("strong", null, "Write these down now: the secret is shown only once."),
          h("div", null, "Client id: ", h("code", null, answer.terminal!.clientId)),
          h("div", null, "Client secret: ", h("code", { testid: "client-secret" }, answer.clientSecret)),
        ),
      );
      await render();
    });
  });
  replace(
    main,
    page(
      "Terminals",
      list,
      card("Register a terminal", merchants.length ? register : h("p", null, "Create a merchant first."), secret),
    ),
  );
  await render();
};
