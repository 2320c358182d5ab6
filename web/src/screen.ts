/** A screen draws itself into `main`; what it returns is called when the page is left. Its own module, so
 * that the screens need nothing from `main.ts`, which imports them all to route. */
export type Screen = (main: HTMLElement, params: string[], query: URLSearchParams) => Promise<(() => void) | void>;
