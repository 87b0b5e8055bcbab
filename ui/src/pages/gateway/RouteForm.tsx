// Create or edit a route with every policy the API has (gate.routes.RouteSpec).
import { useState, type FormEvent } from "react";
import { type Schemas } from "../../api/client";
import { ErrorBox, Spinner } from "../../components/ui";

type Spec = Schemas["RouteSpec"];

const lines = (s: string) => s.split(/[\n,]/).map((x) => x.trim()).filter(Boolean);
const headerMap = (s: string) => Object.fromEntries(s.split("\n").map((l) => l.trim()).filter(Boolean).map((l) => {
  const i = l.indexOf(":");
  return i < 0 ? [l, ""] : [l.slice(0, i).trim(), l.slice(i + 1).trim()];
}));
const showHeaders = (m: Record<string, string> | undefined) => Object.entries(m ?? {}).map(([k, v]) => `${k}: ${v}`).join("\n");

export function RouteForm({ initial, onSubmit, onCancel }: {
  initial?: Spec; onSubmit: (spec: Spec) => Promise<void>; onCancel: () => void;
}) {
  const p = initial?.policies;
  const [f, setF] = useState({
    host: initial?.host ?? "", path: initial?.path ?? "/", upstreams: (initial?.upstreams ?? []).join("\n"),
    strip_prefix: initial?.strip_prefix ?? false, methods: (initial?.methods ?? []).join(", "), tls: initial?.tls ?? "off",
    balance: initial?.balance ?? "round_robin", max_body_bytes: initial?.max_body_bytes?.toString() ?? "",
    upstream_timeout_s: initial?.upstream_timeout_s?.toString() ?? "", static_dir: initial?.static_dir ?? "",
    static_spa: initial?.static_spa ?? false, static_dotfiles: initial?.static_dotfiles === "allow",
    request_buffer_bytes: initial?.request_buffer_bytes?.toString() ?? "", redirect_https: p?.redirect_https ?? true,
    hsts_max_age_s: String(p?.hsts_max_age_s ?? 0), security_headers: p?.security_headers ?? false,
    rate: p?.rate_limit?.rate_per_s?.toString() ?? "", burst: p?.rate_limit?.burst?.toString() ?? "",
    allow: (p?.allow ?? []).join("\n"), deny: (p?.deny ?? []).join("\n"),
    basic_auth: (p?.basic_auth ?? []).map((u) => `${u.username}:${u.bcrypt_hash}`).join("\n"),
    realm: p?.basic_auth_realm ?? "restricted",
    req_set: showHeaders(p?.request_headers?.set), req_remove: (p?.request_headers?.remove ?? []).join(", "),
    resp_set: showHeaders(p?.response_headers?.set), resp_remove: (p?.response_headers?.remove ?? []).join(", "),
  });
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const set = (k: keyof typeof f) => (e: { target: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement }) =>
    setF({ ...f, [k]: e.target instanceof HTMLInputElement && e.target.type === "checkbox" ? e.target.checked : e.target.value });

  async function submit(e: FormEvent) {
    e.preventDefault();
    const spec: Spec = {
      host: f.host.trim(), path: f.path.trim() || "/", upstreams: lines(f.upstreams), strip_prefix: f.strip_prefix,
      methods: lines(f.methods).length ? lines(f.methods).map((m) => m.toUpperCase()) : null,
      tls: f.tls as Spec["tls"], balance: f.balance as Spec["balance"],
      max_body_bytes: f.max_body_bytes ? Number(f.max_body_bytes) : null,
      upstream_timeout_s: f.upstream_timeout_s ? Number(f.upstream_timeout_s) : null,
      request_buffer_bytes: f.request_buffer_bytes ? Number(f.request_buffer_bytes) : null,
      static_dir: f.static_dir.trim() || null, static_spa: f.static_spa,
      static_dotfiles: f.static_dotfiles && f.static_dir.trim() ? "allow" : "deny",
      policies: {
        redirect_https: f.redirect_https, hsts_max_age_s: Number(f.hsts_max_age_s) || 0, security_headers: f.security_headers,
        rate_limit: f.rate ? { rate_per_s: Number(f.rate), burst: Number(f.burst) || 0 } : null,
        allow: lines(f.allow), deny: lines(f.deny),
        basic_auth: f.basic_auth.split("\n").map((l) => l.trim()).filter(Boolean).map((l) => {
          const i = l.indexOf(":");
          return { username: l.slice(0, i), bcrypt_hash: l.slice(i + 1) };
        }),
        basic_auth_realm: f.realm,
        request_headers: { set: headerMap(f.req_set), remove: lines(f.req_remove) },
        response_headers: { set: headerMap(f.resp_set), remove: lines(f.resp_remove) },
      },
    };
    setBusy(true);
    setError(null);
    try {
      await onSubmit(spec);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="stack" onSubmit={submit} aria-label={initial ? "Edit route" : "New route"}>
      <div className="form-grid">
        <label className="field">Host<span className="hint">exact (app.example.com) or wildcard (*.example.com)</span>
          <input name="host" value={f.host} onChange={set("host")} required /></label>
        <label className="field">Path prefix<input name="path" value={f.path} onChange={set("path")} /></label>
        <label className="field wide">Upstreams<span className="hint">one per line: 127.0.0.1:8080 or service:NAME</span>
          <textarea name="upstreams" rows={2} value={f.upstreams} onChange={set("upstreams")} /></label>
        <label className="field">TLS<select name="tls" value={f.tls} onChange={set("tls")}>
          <option value="off">off (HTTP only)</option><option value="auto">auto (ACME certificate)</option><option value="manual">manual (imported certificate)</option>
        </select></label>
        <label className="field">Balancing<select name="balance" value={f.balance} onChange={set("balance")}>
          <option value="round_robin">round robin</option><option value="least_conn">least connections</option>
        </select></label>
        <label className="check"><input type="checkbox" checked={f.redirect_https} onChange={set("redirect_https")} /> Redirect HTTP to HTTPS (routes with TLS)</label>
        <label className="check"><input type="checkbox" checked={f.security_headers} onChange={set("security_headers")} /> Security headers</label>
        <label className="field">HSTS max-age (s)<span className="hint">0: no HSTS</span><input name="hsts" type="number" min={0} value={f.hsts_max_age_s} onChange={set("hsts_max_age_s")} /></label>
        <label className="check"><input type="checkbox" checked={f.strip_prefix} onChange={set("strip_prefix")} /> Strip the path prefix</label>
      </div>
      <details className="more">
        <summary>Rate limit, access, basic auth, headers, static files, limits</summary>
        <div className="form-grid">
          <label className="field">Rate limit (requests/s per client IP)<span className="hint">empty: none</span><input name="rate" type="number" min={0} step="any" value={f.rate} onChange={set("rate")} /></label>
          <label className="field">Burst<input name="burst" type="number" min={0} value={f.burst} onChange={set("burst")} /></label>
          <label className="field">Allow (CIDR, one per line)<span className="hint">empty: everyone</span><textarea name="allow" rows={2} value={f.allow} onChange={set("allow")} /></label>
          <label className="field">Deny (CIDR, one per line)<textarea name="deny" rows={2} value={f.deny} onChange={set("deny")} /></label>
          <label className="field wide">Basic auth users<span className="hint">user:bcrypt-hash per line (e.g. from <code>htpasswd -nbB user pass</code>)</span>
            <textarea name="basic_auth" rows={2} value={f.basic_auth} onChange={set("basic_auth")} /></label>
          <label className="field">Basic auth realm<input name="realm" value={f.realm} onChange={set("realm")} /></label>
          <label className="field">Methods<span className="hint">comma-separated; empty: all</span><input name="methods" value={f.methods} onChange={set("methods")} /></label>
          <label className="field">Request headers to set<span className="hint">Name: value per line</span><textarea name="req_set" rows={2} value={f.req_set} onChange={set("req_set")} /></label>
          <label className="field">Request headers to remove<input name="req_remove" value={f.req_remove} onChange={set("req_remove")} /></label>
          <label className="field">Response headers to set<textarea name="resp_set" rows={2} value={f.resp_set} onChange={set("resp_set")} /></label>
          <label className="field">Response headers to remove<input name="resp_remove" value={f.resp_remove} onChange={set("resp_remove")} /></label>
          <label className="field">Static directory<span className="hint">serve files instead of proxying</span><input name="static_dir" value={f.static_dir} onChange={set("static_dir")} /></label>
          <label className="check"><input type="checkbox" checked={f.static_spa} onChange={set("static_spa")} /> Single-page app fallback</label>
          <label className="check"><input type="checkbox" checked={f.static_dotfiles} onChange={set("static_dotfiles")} /> Serve dotfiles (.env, .git/ …)</label>
          <label className="field">Max body bytes<input name="max_body_bytes" type="number" min={0} value={f.max_body_bytes} onChange={set("max_body_bytes")} /></label>
          <label className="field">Request buffer bytes<span className="hint">bodies up to this size are received whole first; 0: stream; empty: gate default (64 KiB)</span><input name="request_buffer_bytes" type="number" min={0} value={f.request_buffer_bytes} onChange={set("request_buffer_bytes")} /></label>
          <label className="field">Upstream timeout (s)<input name="upstream_timeout_s" type="number" min={0} step="any" value={f.upstream_timeout_s} onChange={set("upstream_timeout_s")} /></label>
        </div>
      </details>
      <ErrorBox error={error} />
      <div className="row">
        <button className="btn primary" type="submit" disabled={busy}>{busy && <Spinner />} {initial ? "Save route" : "Create route"}</button>
        <button className="btn" type="button" onClick={onCancel}>Cancel</button>
      </div>
    </form>
  );
}
