// Services: state, instances, restarts, uptime, CPU and memory sparklines; apply a new spec.
import { useState } from "react";
import { Link, useNavigate } from "react-router-dom";
import { api, unwrap } from "../../api/client";
import { AdminOnly } from "../../auth/AuthContext";
import { TimeChart } from "../../components/Chart";
import { SpecEditor } from "../../components/SpecEditor";
import { Badge, Card, Empty, ErrorBox, Spinner } from "../../components/ui";
import { nowS } from "../../lib/format";
import { formatDuration } from "../../lib/timeWindow";
import { useAsync } from "../../lib/useAsync";
import { useMetric } from "../../lib/useMetric";
import { useEvent } from "../../live/LiveContext";

const TEMPLATE = `name: web
cmd: ["python3", "-m", "http.server", "\${PORT}"]
ports: [{ name: http, internal: auto }]
healthcheck: { http: "http://127.0.0.1:\${PORT}/", interval: 5s, timeout: 2s, retries: 3 }
restart_policy: on-failure:3
replicas: 1
`;

export default function ServicesPage() {
  const services = useAsync(() => unwrap(api.GET("/api/services")));
  const [adding, setAdding] = useState(false);
  const navigate = useNavigate();
  useEvent("service.*", () => void services.reload());

  return (
    <div className="stack">
      <div className="page-head">
        <h1>Services</h1>
        <span className="spacer" />
        <AdminOnly><button type="button" className="btn primary" onClick={() => setAdding(!adding)}>{adding ? "Close" : "New service"}</button></AdminOnly>
      </div>
      {adding && (
        <Card title="New service">
          <SpecEditor initial={TEMPLATE} filename="new.yaml" onApplied={(r) => navigate(`/services/${r.name}`)} />
        </Card>
      )}
      <Card>
        <ErrorBox error={services.error} />
        {services.loading && !services.data ? <Spinner /> : (services.data ?? []).length === 0 ? (
          <Empty>No services yet. Apply a spec here or with <code>fsctl service apply -f FILE</code>.</Empty>
        ) : (
          <div className="table-wrap">
            <table className="t" aria-label="Services">
              <thead><tr><th>Name</th><th>State</th><th>Instances</th><th>Restarts</th><th>Uptime</th><th className="hide-phone">CPU</th><th className="hide-phone">Memory</th></tr></thead>
              <tbody>
                {services.data!.map((s) => (
                  <tr key={s.name} data-service={s.name}>
                    <td><Link to={`/services/${s.name}`}>{s.name}</Link><div className="muted" style={{ fontSize: 12 }}>{s.runtime} · v{s.version}</div></td>
                    <td><Badge status={s.status} />{s.reason && <div className="muted" style={{ fontSize: 12 }}>{s.reason}</div>}</td>
                    <td>{s.healthy}/{s.replicas}</td>
                    <td>{s.restarts}</td>
                    <td><Uptime name={s.name} /></td>
                    <td className="hide-phone"><Spark service={s.name} metric="service_cpu_percent" /></td>
                    <td className="hide-phone"><Spark service={s.name} metric="service_memory_bytes" /></td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Card>
    </div>
  );
}

/** Time since the oldest running instance started (from the service's detail, refreshed by its events). */
function Uptime({ name }: { name: string }) {
  const d = useAsync(() => unwrap(api.GET("/api/services/{name}", { params: { path: { name } } })), [name]);
  useEvent("service.*", (ev) => {
    if ((ev.data as { service?: string }).service === name) void d.reload();
  });
  const started = (d.data?.instances ?? []).filter((i) => i.phase === "running" && i.started_at != null).map((i) => i.started_at!);
  return <>{started.length ? formatDuration(nowS() - Math.min(...started)) : "–"}</>;
}

function Spark({ service, metric }: { service: string; metric: string }) {
  const m = useMetric(metric, { labels: `service=${service}`, spanS: 300, everyMs: 5000 });
  return <TimeChart small label={`${metric} of ${service}`} series={m.series} />;
}
