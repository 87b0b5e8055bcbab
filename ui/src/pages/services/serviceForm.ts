// The New service form's model, without the browser: the spec it describes (what POST /api/services
// receives), the problems found before sending, and which field an API problem's path belongs to.
export interface PortRow { name: string; internal: string }

export interface ServiceForm {
  name: string; image: string; ports: PortRow[]; env: string; volumes: string; memory: string; cpu: string;
  replicas: string; health: string; restart: string;
}

export const EMPTY_FORM: ServiceForm = {
  name: "", image: "", ports: [{ name: "http", internal: "80" }], env: "", volumes: "", memory: "", cpu: "",
  replicas: "1", health: "", restart: "always",
};

export type FieldKey = "name" | "image" | "ports" | "env" | "volumes" | "memory" | "cpu" | "replicas" | "health" | "restart" | "other";

const nonEmptyLines = (s: string) => s.split("\n").map((l) => l.trim()).filter(Boolean);

/** The spec the form describes (what POST /api/services receives), and the problems found before sending. */
export function buildSpec(f: ServiceForm): { spec: Record<string, unknown>; problems: Partial<Record<FieldKey, string[]>> } {
  const problems: Partial<Record<FieldKey, string[]>> = {};
  const add = (k: FieldKey, m: string) => { (problems[k] ??= []).push(m); };
  const spec: Record<string, unknown> = { name: f.name.trim(), image: f.image.trim() };
  const ports = f.ports.filter((p) => p.name.trim() || p.internal.trim());
  if (ports.length) {
    spec.ports = ports.map((p, i) => {
      const n = Number(p.internal.trim());
      if (!p.name.trim()) add("ports", `port ${i + 1}: give it a name (http, admin …)`);
      const internal = p.internal.trim() === "auto" ? "auto" : Number.isInteger(n) && p.internal.trim() !== "" ? n : p.internal.trim();
      if (internal !== "auto" && typeof internal !== "number") add("ports", `port ${i + 1}: the port inside the container is a number (1-65535) or auto`);
      return { name: p.name.trim(), internal };
    });
  }
  const env: Record<string, string> = {};
  nonEmptyLines(f.env).forEach((l, i) => {
    const eq = l.indexOf("=");
    if (eq <= 0) add("env", `line ${i + 1}: ${JSON.stringify(l)} is not KEY=VALUE`);
    else env[l.slice(0, eq).trim()] = l.slice(eq + 1);
  });
  if (Object.keys(env).length) spec.env = env;
  const volumes = nonEmptyLines(f.volumes);
  if (volumes.length) spec.volumes = volumes;
  const resources: Record<string, unknown> = {};
  if (f.memory.trim()) resources.memory = f.memory.trim();
  if (f.cpu.trim()) resources.cpu = Number.isNaN(Number(f.cpu)) ? f.cpu.trim() : Number(f.cpu);
  if (Object.keys(resources).length) spec.resources = resources;
  if (f.replicas.trim()) spec.replicas = Number.isInteger(Number(f.replicas)) ? Number(f.replicas) : f.replicas.trim();
  if (f.health.trim()) {
    const path = f.health.trim().startsWith("/") ? f.health.trim() : `/${f.health.trim()}`;
    if (!ports.length) add("health", "an HTTP health check needs a port");
    const port = ports[0]?.name.trim();
    const ref = port && ports.length > 1 ? `\${PORT_${port.toUpperCase().replace(/-/g, "_")}}` : "${PORT}";
    spec.healthcheck = { http: `http://127.0.0.1:${ref}${path}`, interval: "2s", timeout: "2s", retries: 3, start_period: "5s" };
  }
  if (f.restart) spec.restart_policy = f.restart;
  return { spec, problems };
}

/** Which form field an API problem's field path belongs to. */
export function fieldOf(path: string): FieldKey {
  const [head, sub] = path.split(/[.[\]]+/); // "resources.memory", "volumes[0]", "ports.0.internal"
  if (head === "resources") return sub === "cpu" ? "cpu" : "memory";
  if (head === "healthcheck") return "health";
  if (head === "restart_policy") return "restart";
  if (head === "name" || head === "image" || head === "ports" || head === "env" || head === "volumes" || head === "replicas") return head;
  return "other";
}
