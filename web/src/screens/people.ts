import { AccountKind } from "../../../generated/ts/emoney/accounts/v1/accounts_pb";
import { Role, type User } from "../../../generated/ts/emoney/auth/v1/auth_pb";
import { accounts, admin, idOf } from "../api";
import { field, h, input, link, replace, select, table } from "../dom";
import { accountOfKindLabel, fromSlug, roleLabel, slugOf, userStatusBadge } from "../enums";
import { t } from "../i18n";
import { accountsTable, findUser, forgetUsers, PAGE_SIZE } from "../lists";
import { act, card, loading, navigate, page, say, showError, when } from "../ui";
import type { Screen } from "../screen";

/** The people screens: one per role, and the kind of account each role's people may hold. */
type PeopleRole = Role.CUSTOMER | Role.MERCHANT;
/** The catalogue's key for each role's texts (t().people.titles.customer, …). */
const ROLE_KEYS: Record<PeopleRole, "customer" | "merchant"> = { [Role.CUSTOMER]: "customer", [Role.MERCHANT]: "merchant" };
const ACCOUNT_KIND_OF_ROLE: Partial<Record<Role, AccountKind>> = { [Role.CUSTOMER]: AccountKind.CUSTOMER, [Role.MERCHANT]: AccountKind.MERCHANT };

const SEARCH_PAGE_SIZE = 50;
const SEARCH_DELAY_MS = 250;
const MAX_QUERY_LENGTH = 100; // the server's limit on ListUsers' query

export function peopleScreen(role: PeopleRole): Screen {
  return async (main, _params, query) => {
    const text = t().people;
    const key = ROLE_KEYS[role];
    const search = input("search", { type: "search", placeholder: text.search, value: query.get("q") ?? "", autocomplete: "off", maxlength: String(MAX_QUERY_LENGTH) });
    const results = h("div", null, loading());
    const more = h("button", { testid: "people-more" }, t().app.showMore);
    more.hidden = true;
    replace(main, page(text.titles[key], h("div", { class: "toolbar" }, search), results, more, card(text.newOne[key], newUserForm(role))));
    // The server searches (ListUsers' query: a case-insensitive fragment of the name or e-mail
    // address); answers to an older text are dropped when a newer search has started.
    const found: User[] = [];
    let pageToken = "";
    let searched = "";
    let generation = 0;
    const load = async (fresh: boolean) => {
      const mine = fresh ? ++generation : generation;
      const typed = search.value.trim();
      const answer = await admin.listUsers({ pageSize: SEARCH_PAGE_SIZE, pageToken: fresh ? "" : pageToken, role, query: typed });
      if (mine !== generation) return;
      if (fresh) found.length = 0;
      found.push(...answer.users);
      pageToken = answer.nextPageToken;
      searched = typed;
      more.hidden = !pageToken;
      replace(
        results,
        table(
          "people",
          text.headings,
          found.map((user) => [link(`#/users/${idOf(user.name)}`, user.displayName), user.email, userStatusBadge(user.status), when(user.createTime)]),
          searched ? text.nobodyMatches : text.noneYet[key],
        ),
      );
    };
    let timer: number | undefined;
    search.addEventListener("input", () => {
      window.clearTimeout(timer);
      timer = window.setTimeout(() => {
        if (search.value.trim() !== searched) void load(true).catch(showError);
      }, SEARCH_DELAY_MS);
    });
    more.addEventListener("click", () => act(more, () => load(false)));
    await load(true);
    search.focus();
    return () => window.clearTimeout(timer);
  };
}

function newUserForm(role: PeopleRole): HTMLFormElement {
  const name = input("display-name", { required: true, maxlength: "200" });
  const email = input("new-email", { type: "email", required: true });
  const text = t().people;
  const form = h("form", { class: "inline-form", testid: "new-user" }, field(text.name, name), field(text.email, email), h("button", { attrs: { type: "submit" } }, text.create[ROLE_KEYS[role]]));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let created = "";
    let password = "";
    const ok = await act(form, async () => {
      const answer = await admin.createUser({ email: email.value.trim(), displayName: name.value.trim(), roles: [role] });
      forgetUsers();
      created = answer.user!.name;
      password = answer.initialPassword;
    });
    // The first password is shown this once: the server keeps only its hash.
    if (ok) navigate(`#/users/${idOf(created)}`, { kind: "notice", text: t().people.created(password) });
  });
  return form;
}

export const personScreen: Screen = async (main, [userId]) => {
  const name = `users/${userId}`;
  replace(main, page(t().people.person, loading()));
  const user = await findUser(name);
  if (!user) {
    replace(main, page(t().people.person, h("p", null, t().people.noSuchPerson)));
    return;
  }
  const render = async () => {
    const text = t().people;
    const owned = await accounts.listAccounts({ owner: name, pageSize: PAGE_SIZE });
    const kinds = user.roles.flatMap((role) => ACCOUNT_KIND_OF_ROLE[role] ?? []);
    const kind = select("account-kind", kinds.map((accountKind) => [slugOf(AccountKind, accountKind), accountOfKindLabel(accountKind)]));
    const currency = input("currency", { value: "", placeholder: text.defaultCurrency, size: "5", maxlength: "3" });
    const open = h("form", { class: "inline-form", testid: "open-account" }, field(text.kind, kind), field(text.currency, currency), h("button", { attrs: { type: "submit" } }, text.openAccount));
    open.addEventListener("submit", async (event) => {
      event.preventDefault();
      await act(open, async () => {
        await accounts.createAccount({ owner: name, kind: fromSlug<AccountKind>(AccountKind, kind.value), currency: currency.value.trim().toUpperCase() });
        await render();
        say("notice", t().people.accountOpen);
      });
    });
    replace(
      main,
      page(
        user.displayName,
        h("p", { class: "muted" }, user.email, " · ", user.roles.map(roleLabel).join(", "), " · ", userStatusBadge(user.status), text.since(when(user.createTime))),
        card(text.accounts, accountsTable("person-accounts", owned.accounts)),
        kinds.length ? card(text.openAnAccount, open) : null,
      ),
    );
  };
  await render();
};
