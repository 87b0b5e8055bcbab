// Overview: host CPU, memory, disk and network as live charts, services by state, certificates by
// days to expiry, active alerts, the gate's traffic, and the latest events.
import { useState } from "react";
import { Link } from "react-router-dom";
import { api, unwrap } from "../../api/client";
import { TimeChart } from "../../components/Chart";
import { Badge, Card, Empty, ErrorBox } from "../../components/ui";
import { dateTime, num, pct, timeOf } from "../../lib/format";
import { useAsync, useInterval } from "../../lib/useAsync";
import { sumBy, useMetric } from "../../lib/useMetric";
import { useEvent, useLiveStore } from "../../live/LiveContext";
import type { LiveEvent } from "../../live/eventStore";

export default function OverviewPage() {
  const cpu = useMetric("host_cpu_percent", { labels: "cpu=total" });
  const mem = useMetric("host_memory_used_bytes", { scale: 1 / 2 ** 20 });
  const disk = useMetric("host_fs_used_percent");
  const rx = useMetric("host_net_rx_bytes_per_second", { scale: 1 / 1024 });
  const tx = useMetric("host_net_tx_bytes_per_second", { scale: 1 / 1024 });
  const services = useAsync(() => unwrap(api.GET("/api/services")));
  const certs = useAsync(() => unwrap(api.GET("/api/certs")));
  const alerts = useAsync(() => unwrap(api.GET("/api/alerts")));
  const gate = useAsync(() => unwrap(api.GET("/api/gate/metrics", { params: { query: { window_s: "60" } } })));
  useEvent("service.*", () => void services.reload());
  useEvent("cert.*", () => void certs.reload());
  useEvent("alert.*", () => void alerts.reload());
  useInterval(() => void gate.reload(), 2000);

  const list = services.data ?? [];
  const count = (pred: (s: (typeof list)[number]) => boolean) => list.filter(pred).length;
  const up = count((s) => s.status === "running");
  const crash = count((s) => s.status === "crashloop" || s.status === "failed");
  const down = list.length - up - crash;
  const t = gate.data?.total;
  const reqs = t?.requests ?? 0;
  const rate = (n: number | undefined) => (reqs ? `${(((n ?? 0) / reqs) * 100).toFixed(1)} %` : "–");

  return (
    <div className="stack">
      <div className="page-head"><h1>Overview</h1></div>
      <div className="grid cols-4 keep">
        <Card><div className="stat-label">Services up</div><div className="stat" data-testid="services-up">{up}</div></Card>
        <Card><div className="stat-label">Down / stopped</div><div className="stat">{down}</div></Card>
        <Card><div className="stat-label">Crashlooping</div><div className="stat" style={{ color: crash ? "var(--bad)" : undefined }}>{crash}</div></Card>
        <Card>
          <div className="stat-label">Gate requests/s</div>
          <div className="stat">{num(t?.qps)}</div>
          <div className="muted">4xx {rate(t?.status["4xx"])} · 5xx {rate(t?.status["5xx"])}</div>
        </Card>
      </div>
      <div className="grid cols-2">
        <Card title="CPU"><ErrorBox error={cpu.error} /><TimeChart label="Host CPU %" series={cpu.series.map((x) => ({ ...x, name: "CPU" }))} unit="%" max={100} /></Card>
        <Card title="Memory"><ErrorBox error={mem.error} /><TimeChart label="Host memory used MiB" series={mem.series} unit="MiB" /></Card>
        <Card title="Disk"><TimeChart label="Disk used %" series={disk.series} unit="%" /></Card>
        <Card title="Network">
          <TimeChart label="Network KiB/s" unit="KiB/s"
            series={[...sumBy(rx.series, (n) => (n === "interface=lo" ? null : "received")),
              ...sumBy(tx.series, (n) => (n === "interface=lo" ? null : "sent"))]} />
        </Card>
      </div>
      <div className="grid cols-3">
        <Card title="Services" actions={<Link to="/services">All</Link>}>
          <ErrorBox error={services.error} />
          {list.length === 0 ? <Empty>No services yet.</Empty> : (
            <table className="t"><tbody>
              {list.map((s) => (
                <tr key={s.name}><td><Link to={`/services/${s.name}`}>{s.name}</Link></td><td><Badge status={s.status} /></td></tr>
              ))}
            </tbody></table>
          )}
        </Card>
        <Card title="Certificates" actions={<Link to="/gateway?tab=certs">All</Link>}>
          {(certs.data ?? []).length === 0 ? <Empty>No certificates.</Empty> : (
            <table className="t"><tbody>
              {[...(certs.data ?? [])].sort((a, b) => (a.days_left ?? 1e9) - (b.days_left ?? 1e9)).map((c) => (
                <tr key={c.name}><td>{c.name}</td><td>{c.days_left != null ? `${Math.floor(c.days_left)} days` : "–"}</td><td><Badge status={c.status} /></td></tr>
              ))}
            </tbody></table>
          )}
        </Card>
        <Card title="Active alerts" actions={<Link to="/monitoring">Rules</Link>}>
          {(alerts.data?.active ?? []).length === 0 ? <Empty>Nothing firing.</Empty> : (
            <table className="t"><tbody>
              {alerts.data!.active.map((a) => (
                <tr key={`${a.rule_id}-${JSON.stringify(a.labels)}`}><td>{a.rule}</td><td>{num(a.value, 2)}</td><td><Badge status={a.status} /></td><td className="muted">{dateTime(a.since)}</td></tr>
              ))}
            </tbody></table>
          )}
        </Card>
      </div>
      <RecentEvents />
      <p className="muted" style={{ fontSize: 12 }}>CPU {pct(last(cpu.series))} · points every second, the last 5 minutes.</p>
    </div>
  );
}

function last(series: { points: [number, number | null][] }[]): number | null {
  const p = series[0]?.points;
  return p && p.length ? p[p.length - 1][1] : null;
}

function RecentEvents() {
  const store = useLiveStore();
  const [events, setEvents] = useState<LiveEvent[]>(() => store.recent.slice(-15));
  useEvent("*", () => setEvents(store.recent.slice(-15)));
  return (
    <Card title="Recent events">
      {events.length === 0 ? <Empty>No events since this page opened.</Empty> : (
        <table className="t"><tbody>
          {[...events].reverse().map((e) => (
            <tr key={e.id}><td className="muted mono">{timeOf(e.at)}</td><td><code>{e.type}</code></td>
              <td className="mono">{Object.entries(e.data).slice(0, 4).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ")}</td></tr>
          ))}
        </tbody></table>
      )}
    </Card>
  );
}
