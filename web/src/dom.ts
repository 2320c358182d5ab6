// A few helpers for building the page with the DOM itself (no framework): elements are made with h(),
// text is always set as text (never parsed as HTML), so nothing the API returns can inject markup.

export type Child = Node | string | number | bigint | null | undefined | false | Child[];

export interface Props {
  class?: string;
  testid?: string;
  attrs?: Record<string, string | boolean | undefined>;
  on?: { [K in keyof HTMLElementEventMap]?: (event: HTMLElementEventMap[K]) => void };
}

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props?: Props | null,
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  if (props?.class) element.className = props.class;
  if (props?.testid) element.dataset.testid = props.testid;
  for (const [name, value] of Object.entries(props?.attrs ?? {})) {
    if (value === true) element.setAttribute(name, "");
    else if (typeof value === "string") element.setAttribute(name, value);
  }
  for (const [type, listener] of Object.entries(props?.on ?? {})) {
    element.addEventListener(type, listener as EventListener);
  }
  append(element, children);
  return element;
}

export function append(parent: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else parent.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces everything inside `parent` with `children`. */
export function replace(parent: Node, ...children: Child[]): void {
  while (parent.firstChild) parent.removeChild(parent.firstChild);
  append(parent, children);
}

export function link(href: string, ...children: Child[]): HTMLAnchorElement {
  return h("a", { attrs: { href } }, ...children);
}

/** A table with a header row; `rows` are arrays of cells. */
export function table(testid: string, headings: string[], rows: Child[][], empty: string): HTMLElement {
  if (rows.length === 0) return h("p", { class: "empty", testid }, empty);
  // On a narrow screen (a 390-pixel phone) the table scrolls sideways inside its card; the page does not.
  return h(
    "div",
    { class: "table-scroll" },
    h(
      "table",
      { testid },
      h("thead", null, h("tr", null, headings.map((heading) => h("th", null, heading)))),
      h("tbody", null, rows.map((cells) => h("tr", null, cells.map((cell) => h("td", null, cell))))),
    ),
  );
}

/** A pill showing `text`, coloured by `tone` (the CSS class `badge-<tone>`, e.g. `badge-frozen`). */
export function badge(text: string, tone: string): HTMLElement {
  return h("span", { class: `badge badge-${tone.replace(/[^a-z_]/g, "")}` }, text);
}

/** A labelled form field. */
export function field(label: string, input: HTMLElement, hint?: string): HTMLElement {
  return h("label", { class: "field" }, h("span", null, label), input, hint ? h("small", null, hint) : null);
}

export function input(name: string, attrs: Record<string, string | boolean | undefined> = {}): HTMLInputElement {
  return h("input", { attrs: { name, id: `field-${name}`, ...attrs } });
}

export function select(name: string, options: [string, string][], selected = ""): HTMLSelectElement {
  return h(
    "select",
    { attrs: { name, id: `field-${name}` } },
    options.map(([value, text]) => h("option", { attrs: { value, selected: value === selected } }, text)),
  );
}
