import { AccountKind } from "../../../generated/ts/emoney/accounts/v1/accounts_pb";
import type { IdentityLevel } from "../../../generated/ts/emoney/admin/v1/admin_pb";
import { Role, type User } from "../../../generated/ts/emoney/auth/v1/auth_pb";
import { accounts, admin, idOf } from "../api";
import { field, h, input, link, replace, select, table } from "../dom";
import { accountOfKindLabel, fromSlug, roleLabel, slugOf, userStatusBadge } from "../enums";
import { t } from "../i18n";
import { accountsTable, findUser, forgetUsers, identityLevels, levelName, PAGE_SIZE } from "../lists";
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
    // Customers are listed with their identity level, when the tenant has levels (a merchant's limits are its
    // terminals'); read alongside the first page of people.
    const levelsRead = role === Role.CUSTOMER ? identityLevels() : Promise.resolve([]);
    // The server searches (ListUsers' query: a case-insensitive fragment of the name or e-mail
    // address); answers to an older text are dropped when a newer search has started.
    const found: User[] = [];
    let pageToken = "";
    let searched = "";
    let generation = 0;
    const load = async (fresh: boolean) => {
      const mine = fresh ? ++generation : generation;
      const typed = search.value.trim();
      const [answer, levels] = await Promise.all([
        admin.listUsers({ pageSize: SEARCH_PAGE_SIZE, pageToken: fresh ? "" : pageToken, role, query: typed }),
        levelsRead,
      ]);
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
          levels.length ? text.customerHeadings : text.headings,
          found.map((user) => [
            link(`#/users/${idOf(user.name)}`, user.displayName),
            user.email,
            levels.length ? levelCell(levels, user) : null,
            userStatusBadge(user.status),
            when(user.createTime),
          ].filter((cell) => cell !== null)),
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

/** A customer's level in the list (none set: the lowest), with a link to change it on their page. */
function levelCell(levels: IdentityLevel[], user: User): HTMLElement {
  return h(
    "span",
    { class: "level", testid: "person-level", attrs: { "data-level": user.level } },
    levelName(levels, user.level),
    " ",
    h("small", null, link(`#/users/${idOf(user.name)}?change=level`, t().people.change)),
  );
}

/** The customer's level and the form that changes it (SetUserLevel, with the reason the audit log keeps). */
function levelCard(user: User, levels: IdentityLevel[], changed: (notice: string) => Promise<void>): HTMLElement {
  const text = t().people;
  if (!levels.length) return card(text.level, h("p", { class: "muted", testid: "person-level" }, text.noLevels));
  const current = user.level || levels[0].code;
  const level = select("level", levels.map((option): [string, string] => [option.code, `${option.displayName} (${option.code})`]), current);
  const reason = input("level-reason", { required: true, maxlength: "200", placeholder: text.reasonPlaceholder, size: "40" });
  const form = h(
    "form",
    { class: "inline-form", testid: "set-level" },
    field(text.newLevel, level),
    field(text.reason, reason),
    h("button", { attrs: { type: "submit" } }, text.changeLevel),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await act(form, async () => {
      const answer = await admin.setUserLevel({ user: user.name, level: level.value, reason: reason.value.trim() });
      forgetUsers();
      await changed(answer.previousLevel === answer.level
        ? t().people.levelUnchanged(levelName(levels, answer.level))
        : t().people.levelChanged(levelName(levels, answer.previousLevel), levelName(levels, answer.level)));
    });
  });
  return card(
    text.level,
    h("p", { testid: "person-level", attrs: { "data-level": current } }, text.atLevel(levelName(levels, user.level))),
    form,
  );
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

export const personScreen: Screen = async (main, [userId], query) => {
  const name = `users/${userId}`;
  replace(main, page(t().people.person, loading()));
  let user = await findUser(name);
  if (!user) {
    replace(main, page(t().people.person, h("p", null, t().people.noSuchPerson)));
    return;
  }
  const isCustomer = user.roles.includes(Role.CUSTOMER);
  const render = async (notice?: string) => {
    const text = t().people;
    user = (await findUser(name)) ?? user!;
    const [owned, levels] = await Promise.all([
      accounts.listAccounts({ owner: name, pageSize: PAGE_SIZE }),
      isCustomer ? identityLevels() : Promise.resolve(null),
    ]);
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
    const levelSection = levels ? levelCard(user, levels, (done) => render(done)) : null;
    replace(
      main,
      page(
        user.displayName,
        h("p", { class: "muted" }, user.email, " · ", user.roles.map(roleLabel).join(", "), " · ", userStatusBadge(user.status), text.since(when(user.createTime))),
        levelSection,
        card(text.accounts, accountsTable("person-accounts", owned.accounts)),
        kinds.length ? card(text.openAnAccount, open) : null,
      ),
    );
    if (notice) say("notice", notice);
  };
  await render();
  if (query.get("change") === "level") main.querySelector<HTMLInputElement>("#field-level-reason")?.focus();
};
