// The one typed API client: generated types (schema.d.ts, from openapi.json) + openapi-fetch.
// The browser authenticates with its HttpOnly session cookie; every mutating call carries the
// session's CSRF token (kept in memory only). A 401 sends the person back to the login page.
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];

const MUTATING = new Set(["POST", "PUT", "PATCH", "DELETE"]);

let csrfToken = "";
let onUnauthorized: (() => void) | null = null;

export function setCsrfToken(token: string): void {
  csrfToken = token;
}

export function setUnauthorizedHandler(fn: (() => void) | null): void {
  onUnauthorized = fn;
}

/** An API error as the server sent it: message, stable code, request id for the server log. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
    readonly requestId: string | null,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

const auth: Middleware = {
  onRequest({ request }) {
    if (MUTATING.has(request.method)) request.headers.set("X-CSRF-Token", csrfToken || "1");
    return request;
  },
  onResponse({ request, response }) {
    const path = new URL(request.url).pathname;
    if (response.status === 401 && path !== "/api/auth/session" && onUnauthorized) onUnauthorized();
    return response;
  },
};

export const api = createClient<paths>({ baseUrl: window.location.origin, credentials: "same-origin" });
api.use(auth);

type Result<T> = { data?: T; error?: unknown; response: Response };

/** The data of a call, or an ApiError carrying the API's message and request id. */
export async function unwrap<T>(call: Promise<Result<T>>): Promise<T> {
  const { data, error, response } = await call;
  if (response.ok) return data as T;
  throw toApiError(error, response);
}

export function toApiError(error: unknown, response: Response): ApiError {
  const body = (error ?? {}) as { error?: { code?: string; message?: string; details?: Record<string, unknown> } };
  const details = body.error?.details ?? {};
  const requestId = (details.request_id as string | undefined) ?? response.headers.get("X-Request-Id");
  const message = body.error?.message ?? `${response.status} ${response.statusText}`;
  return new ApiError(message, response.status, body.error?.code ?? "http_error", requestId, details);
}

/** A raw fetch for what the typed client does not cover (text bodies, downloads). */
export async function rawFetch(path: string, init: RequestInit = {}): Promise<Response> {
  const method = (init.method ?? "GET").toUpperCase();
  const headers = new Headers(init.headers);
  if (MUTATING.has(method)) headers.set("X-CSRF-Token", csrfToken || "1");
  const response = await fetch(path, { ...init, headers, credentials: "same-origin" });
  if (response.status === 401 && onUnauthorized) onUnauthorized();
  if (!response.ok) {
    let body: unknown = null;
    try {
      body = await response.clone().json();
    } catch {
      /* not JSON */
    }
    throw toApiError(body, response);
  }
  return response;
}
