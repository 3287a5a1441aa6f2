// The API seen from the page: the token (session storage only), requests with it, its role.
// A token given once as /#token=... is moved to session storage and taken out of the address.
const KEY = "haco-token";
{
  const m = location.hash.match(/[#&]token=([^&]+)/);
  if (m) {
    sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
    const rest = location.hash.replace(/[#&]?token=[^&]+&?/, "").replace(/^#?/, "");
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  }
}

export const token = () => sessionStorage.getItem(KEY);
export function setToken(t) { if (t) sessionStorage.setItem(KEY, t.trim()); else sessionStorage.removeItem(KEY); }
export const authHeaders = () => { const t = token(); return t ? {"Authorization": "Bearer " + t} : {}; };

// The claims a token carries (haco1.<claims>.<mac>): read to show the role, never trusted: the API decides.
export function claims() {
  const t = token();
  if (!t) return null;
  try {
    const part = t.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part + "=".repeat((4 - part.length % 4) % 4)));
  } catch { return {role: "unknown"}; }
}

const MAY = {submit: ["submitter", "admin"], admin: ["admin"]};
// Whether the token's role may do an action of this rule; with no token (an open API) the API answers.
export function may(rule) { const c = claims(); return !c || c.role === "unknown" || MAY[rule].includes(c.role); }

export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || "HTTP " + status);
    this.status = status; this.code = err.code; this.detail = err.detail;
  }
}

let onUnauthorized = () => {};
export function whenUnauthorized(fn) { onUnauthorized = fn; }

export async function api(path, {method = "GET", body, signal} = {}) {
  const headers = {...authHeaders()};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {method, headers, signal, cache: "no-store",
                               body: body === undefined ? undefined : JSON.stringify(body)});
  const data = r.headers.get("Content-Type")?.includes("json") ? await r.json() : await r.text();
  if (r.status === 401) onUnauthorized(new ApiError(r.status, data));
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}
