// Services: runtime (image or unit, container, ports host→container), state, instances, restarts, uptime,
// CPU and memory sparklines; create one from a form (an image service) or from a YAML spec.
import { useState } from "react";
import { Link, useNavigate } from "react-router-dom";
import { api, unwrap, type Schemas } from "../../api/client";
import { AdminOnly } from "../../auth/AuthContext";
import { TimeChart } from "../../components/Chart";
import { SpecEditor } from "../../components/SpecEditor";
import { Badge, Card, Empty, ErrorBox, Segmented, Spinner } from "../../components/ui";
import { nowS } from "../../lib/format";
import { formatDuration } from "../../lib/timeWindow";
import { useAsync } from "../../lib/useAsync";
import { useMetric } from "../../lib/useMetric";
import { useEvent } from "../../live/LiveContext";
import { NewServiceForm } from "./NewServiceForm";
import { RuntimeSummary } from "./runtime";

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
  const [mode, setMode] = useState<"Form" | "YAML">("Form");
  const [yamlText, setYamlText] = useState(TEMPLATE);
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
        <Card title="New service" actions={<Segmented label="How to describe it" value={mode} options={["Form", "YAML"] as const} onChange={setMode} />}>
          {mode === "Form" ? (
            <NewServiceForm onApplied={(r) => navigate(`/services/${r.name}`)} onYaml={(y) => { setYamlText(y); setMode("YAML"); }} />
          ) : (
            <SpecEditor key={yamlText} initial={yamlText} filename="new.yaml" onApplied={(r) => navigate(`/services/${r.name}`)} />
          )}
        </Card>
      )}
      <Card>
        <ErrorBox error={services.error} />
        {services.loading && !services.data ? <Spinner /> : (services.data ?? []).length === 0 ? (
          <Empty>No services yet. Apply a spec here or with <code>fsctl service apply -f FILE</code>.</Empty>
        ) : (
          <div className="table-wrap">
            <table className="t" aria-label="Services">
              <thead><tr><th>Name · runtime</th><th>State</th><th>Instances</th><th>Restarts</th><th>Uptime</th><th className="hide-phone">CPU</th><th className="hide-phone">Memory</th></tr></thead>
              <tbody>
                {services.data!.map((s) => <ServiceRow key={s.name} s={s} />)}
              </tbody>
            </table>
          </div>
        )}
      </Card>
    </div>
  );
}

/** One service's row; its detail (instances: runtime details, uptime) is refreshed by its events. */
function ServiceRow({ s }: { s: Schemas["ServiceSummary"] }) {
  const name = s.name;
  const d = useAsync(() => unwrap(api.GET("/api/services/{name}", { params: { path: { name } } })), [name, s.version, s.status, s.healthy]);
  useEvent("service.*", (ev) => {
    if ((ev.data as { service?: string }).service === name) void d.reload();
  });
  const instances = d.data?.instances ?? [];
  // Uptime: since the oldest running instance started.
  const started = instances.filter((i) => i.phase === "running" && i.started_at != null).map((i) => i.started_at!);
  return (
    <tr data-service={name}>
      <td><Link to={`/services/${name}`}>{name}</Link> <span className="muted" style={{ fontSize: 12 }}>v{s.version}</span>
        <RuntimeSummary runtime={s.runtime} instances={instances} /></td>
      <td><Badge status={s.status} />{s.reason && <div className="muted" style={{ fontSize: 12 }}>{s.reason}</div>}</td>
      <td>{s.healthy}/{s.replicas}</td>
      <td>{s.restarts}</td>
      <td>{started.length ? formatDuration(nowS() - Math.min(...started)) : "–"}</td>
      <td className="hide-phone"><Spark service={name} metric="service_cpu_percent" /></td>
      <td className="hide-phone"><Spark service={name} metric="service_memory_bytes" /></td>
    </tr>
  );
}

function Spark({ service, metric }: { service: string; metric: string }) {
  const m = useMetric(metric, { labels: `service=${service}`, spanS: 300, everyMs: 5000 });
  return <TimeChart small label={`${metric} of ${service}`} series={m.series} />;
}
