// How a service's instances run: the runtime, and per instance what identifies it there (PID,
// container name and short id with its image, or systemd unit) and its ports as host→container.
import { type Schemas } from "../../api/client";

type Instance = Schemas["Instance"];

/** A container id as `docker ps` shows it (12 hex digits). */
export const shortId = (id: string | null | undefined): string => (id ? id.slice(0, 12) : "");

/** Each named port: `http 41234→80` for a container (host→inside), `http 41234` for the others. */
export function portsText(i: Instance): string {
  return Object.entries(i.ports).map(([name, host]) => {
    const inside = i.container_ports?.[name];
    return inside != null ? `${name} ${host}\u2192${inside}` : `${name} ${host}`;
  }).join(", ");
}

/** Where the instance runs: the container (name, short id) or the unit, else the PID. */
export function RunsAs({ i }: { i: Instance }) {
  if (i.runtime === "docker") {
    return (
      <span className="mono" data-testid="container" title={i.container_id ?? undefined}>
        {i.container ?? "–"}{i.container_id && <span className="muted"> {shortId(i.container_id)}</span>}
      </span>
    );
  }
  if (i.runtime === "systemd") return <span className="mono" data-testid="unit">{i.unit ?? "–"}</span>;
  return <span className="mono">{i.pid != null ? `pid ${i.pid}` : "–"}</span>;
}

/** One line for a service in the list: runtime and image/unit of its first instance, and its ports. */
export function RuntimeSummary({ runtime, instances }: { runtime: string; instances: Instance[] }) {
  const first = instances.find((i) => i.phase === "running") ?? instances[0];
  const what = first?.image ?? first?.unit ?? null;
  const ports = first ? portsText(first) : "";
  return (
    <div data-testid="runtime">
      <span className="badge">{runtime}</span>
      {what && <span className="mono muted" style={{ marginLeft: 6, fontSize: 12 }}>{what}</span>}
      {first?.container_id && <div className="mono muted" style={{ fontSize: 12 }}>{first.container} {shortId(first.container_id)}</div>}
      {ports && <div className="mono" style={{ fontSize: 12 }}>{ports}</div>}
    </div>
  );
}
