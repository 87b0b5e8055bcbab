// Gateway: routes with their traffic (requests/s, error rate, p50/p95/p99) and every policy;
// certificates with issuer, names, expiry, status, last error, and issue / renew / import / remove.
import { useState } from "react";
import { useSearchParams } from "react-router-dom";
import { api, unwrap, type Schemas } from "../../api/client";
import { AdminOnly } from "../../auth/AuthContext";
import { ActionButton, Badge, Card, Empty, ErrorBox, Spinner, Tabs } from "../../components/ui";
import { dateTime, num } from "../../lib/format";
import { useAsync, useInterval } from "../../lib/useAsync";
import { useEvent } from "../../live/LiveContext";
import { RouteForm } from "./RouteForm";

type Tab = "routes" | "certs";

export default function GatewayPage() {
  const [params, setParams] = useSearchParams();
  const tab: Tab = params.get("tab") === "certs" ? "certs" : "routes";
  return (
    <div className="stack">
      <div className="page-head"><h1>Gateway</h1></div>
      <Tabs value={tab} onChange={(t) => setParams(t === "routes" ? {} : { tab: t })}
        options={[{ key: "routes", label: "Routes" }, { key: "certs", label: "Certificates" }]} />
      {tab === "routes" ? <Routes /> : <Certificates />}
    </div>
  );
}

function Routes() {
  const routes = useAsync(() => unwrap(api.GET("/api/routes")));
  const metrics = useAsync(() => unwrap(api.GET("/api/gate/metrics", { params: { query: { window_s: "60" } } })));
  const [editing, setEditing] = useState<Schemas["RouteWithCert"] | "new" | null>(null);
  useEvent("route.changed", () => void routes.reload());
  useEvent("cert.*", () => void routes.reload());
  useInterval(() => void metrics.reload(), 2000);

  const traffic = (name: string) => metrics.data?.routes[name];
  return (
    <>
      <AdminOnly>
        {editing == null && <div><button type="button" className="btn primary" onClick={() => setEditing("new")}>New route</button></div>}
      </AdminOnly>
      {editing != null && (
        <Card title={editing === "new" ? "New route" : `Edit ${editing.host}${editing.path}`}>
          <RouteForm
            initial={editing === "new" ? undefined : editing}
            onCancel={() => setEditing(null)}
            onSubmit={async (spec) => {
              if (editing === "new") await unwrap(api.POST("/api/routes", { body: spec }));
              else await unwrap(api.PUT("/api/routes/{id}", { params: { path: { id: String(editing.id) } }, body: spec }));
              setEditing(null);
              await routes.reload();
            }}
          />
        </Card>
      )}
      <Card>
        <ErrorBox error={routes.error} />
        {!routes.data ? <Spinner /> : routes.data.length === 0 ? <Empty>No routes yet.</Empty> : (
          <div className="table-wrap">
            <table className="t" aria-label="Routes">
              <thead><tr><th>Host and path</th><th>Upstreams</th><th>TLS</th><th>Policies</th><th>req/s</th><th>Errors</th><th>p50 / p95 / p99 ms</th><th /></tr></thead>
              <tbody>
                {routes.data.map((r) => {
                  const t = traffic(r.name);
                  const errors = t && t.requests ? ((t.status["5xx"] + t.status["4xx"]) / t.requests) * 100 : null;
                  const pol = r.policies;
                  const tags = [r.tls !== "off" && pol.redirect_https && "redirect", pol.hsts_max_age_s > 0 && "HSTS", pol.security_headers && "headers",
                    pol.rate_limit && `${pol.rate_limit.rate_per_s}/s`, (pol.allow.length || pol.deny.length) && "ip rules",
                    pol.basic_auth.length && "basic auth", r.static_dir && "static",
                    (Object.keys(pol.request_headers.set).length || pol.request_headers.remove.length ||
                      Object.keys(pol.response_headers.set).length || pol.response_headers.remove.length) && "header rules",
                  ].filter(Boolean);
                  return (
                    <tr key={r.id} data-route={r.host}>
                      <td><strong>{r.host}</strong>{r.path !== "/" && <span className="mono">{r.path}</span>}</td>
                      <td className="mono">{r.upstreams.join(", ") || (r.static_dir ? `static ${r.static_dir}` : "–")}</td>
                      <td><Badge status={r.tls === "off" ? "off" : r.certificate?.source === "fallback" ? "pending" : "ok"}>{r.tls}</Badge></td>
                      <td className="muted">{tags.join(" · ") || "–"}</td>
                      <td>{num(t?.qps)}</td>
                      <td>{errors == null ? "–" : `${errors.toFixed(1)} %`}</td>
                      <td className="mono">{num(t?.latency_ms.p50)} / {num(t?.latency_ms.p95)} / {num(t?.latency_ms.p99)}</td>
                      <td>
                        <AdminOnly>
                          <div className="row">
                            <button type="button" className="btn small" onClick={() => setEditing(r)}>Edit</button>
                            <ActionButton small kind="danger" confirm={`Delete the route ${r.host}${r.path}?`} onAction={async () => {
                              await unwrap(api.DELETE("/api/routes/{ref}", { params: { path: { ref: String(r.id) } } }));
                              await routes.reload();
                            }}>Delete</ActionButton>
                          </div>
                        </AdminOnly>
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
      </Card>
    </>
  );
}

function Certificates() {
  const certs = useAsync(() => unwrap(api.GET("/api/certs")));
  const [issueName, setIssueName] = useState("");
  const [certPem, setCertPem] = useState("");
  const [keyPem, setKeyPem] = useState("");
  useEvent("cert.*", () => void certs.reload());
  return (
    <>
      <Card>
        <ErrorBox error={certs.error} />
        {!certs.data ? <Spinner /> : certs.data.length === 0 ? <Empty>No certificates. Routes with TLS auto get one on their own.</Empty> : (
          <div className="table-wrap">
            <table className="t" aria-label="Certificates">
              <thead><tr><th>Names</th><th>Status</th><th>Issuer</th><th>Expires</th><th>Source</th><th>Last error</th><th /></tr></thead>
              <tbody>
                {certs.data.map((c) => (
                  <tr key={c.name}>
                    <td>{c.names.join(", ")}</td><td><Badge status={c.status} /></td><td>{c.issuer ?? "–"}</td>
                    <td>{dateTime(c.not_after)}{c.days_left != null && <div className="muted">{Math.floor(c.days_left)} days</div>}</td>
                    <td>{c.source}</td><td className="muted">{c.last_error ?? "–"}</td>
                    <td><AdminOnly><div className="row">
                      {c.source !== "imported" && <ActionButton small onAction={async () => { await unwrap(api.POST("/api/certs/{name}/renew", { params: { path: { name: c.name } } })); await certs.reload(); }}>Renew</ActionButton>}
                      <ActionButton small kind="danger" confirm={`Delete the certificate ${c.name}?`} onAction={async () => { await unwrap(api.DELETE("/api/certs/{name}", { params: { path: { name: c.name } } })); await certs.reload(); }}>Delete</ActionButton>
                    </div></AdminOnly></td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Card>
      <AdminOnly>
        <div className="grid cols-2">
          <Card title="Issue now (ACME)">
            <div className="stack">
              <label className="field">Domain name<input value={issueName} onChange={(e) => setIssueName(e.target.value)} placeholder="app.example.com" /></label>
              <div><ActionButton kind="primary" disabled={!issueName} onAction={async () => { await unwrap(api.POST("/api/certs", { body: { name: issueName, also: [] } })); setIssueName(""); await certs.reload(); }}>Issue</ActionButton></div>
            </div>
          </Card>
          <Card title="Import">
            <div className="stack">
              <label className="field">Certificate chain (PEM)<textarea rows={3} value={certPem} onChange={(e) => setCertPem(e.target.value)} /></label>
              <label className="field">Private key (PEM)<textarea rows={3} value={keyPem} onChange={(e) => setKeyPem(e.target.value)} /></label>
              <div><ActionButton kind="primary" disabled={!certPem || !keyPem} onAction={async () => { await unwrap(api.POST("/api/certs/import", { body: { cert_pem: certPem, key_pem: keyPem } })); setCertPem(""); setKeyPem(""); await certs.reload(); }}>Import</ActionButton></div>
            </div>
          </Card>
        </div>
      </AdminOnly>
    </>
  );
}
