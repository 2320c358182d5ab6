import { signIn } from "../api";
import { field, h, input, replace } from "../dom";
import { t } from "../i18n";
import { act, navigate } from "../ui";
import type { Screen } from "../screen";

export const signInScreen: Screen = async (main, _params, query) => {
  const tenant = input("tenant", { value: query.get("tenant") ?? "demo-city", required: true, autocomplete: "organization" });
  const email = input("email", { type: "email", required: true, autocomplete: "username" });
  const password = input("password", { type: "password", required: true, autocomplete: "current-password" });
  const text = t().signIn;
  const submit = h("button", { class: "primary", testid: "sign-in", attrs: { type: "submit" } }, text.submit);
  const form = h(
    "form",
    { class: "signin", testid: "sign-in-form" },
    h("h1", null, text.heading),
    h("p", { class: "muted" }, text.intro),
    field(text.organisation, tenant, text.organisationHint),
    field(text.email, email),
    field(text.password, password),
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const ok = await act(form, () => signIn(tenant.value, email.value, password.value));
    if (ok) navigate("#/");
    else password.select();
  });
  replace(main, form);
  (email.value ? password : email).focus();
};
