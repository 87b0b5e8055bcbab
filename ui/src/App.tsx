// Routes, the navigation bar and the login gate. Every page is its own chunk (one folder per page).
import { lazy, Suspense, useEffect, type ReactNode } from "react";
import { BrowserRouter, Navigate, NavLink, Route, Routes, useLocation, useNavigate } from "react-router-dom";
import { AuthProvider, useAuth } from "./auth/AuthContext";
import { ErrorBox, Spinner } from "./components/ui";
import { EventToasts, ToastProvider } from "./components/Toasts";
import { LiveIndicator, LiveProvider } from "./live/LiveContext";
import { LoginPage } from "./pages/login/LoginPage";

const Overview = lazy(() => import("./pages/overview/OverviewPage"));
const Services = lazy(() => import("./pages/services/ServicesPage"));
const ServiceDetail = lazy(() => import("./pages/services/ServiceDetailPage"));
const Gateway = lazy(() => import("./pages/gateway/GatewayPage"));
const Logs = lazy(() => import("./pages/logs/LogsPage"));
const Monitoring = lazy(() => import("./pages/metrics/MetricsPage"));
const Security = lazy(() => import("./pages/security/SecurityPage"));
const Settings = lazy(() => import("./pages/settings/SettingsPage"));
const Backups = lazy(() => import("./pages/backups/BackupsPage"));
const Deploys = lazy(() => import("./pages/deploys/DeploysPage"));

// Client routes avoid /metrics (the Prometheus exposition) and /api.
export const NAV = [
  { to: "/", label: "Overview" },
  { to: "/services", label: "Services" },
  { to: "/deploys", label: "Deploys" },
  { to: "/gateway", label: "Gateway" },
  { to: "/logs", label: "Logs" },
  { to: "/monitoring", label: "Metrics & alerts" },
  { to: "/backups", label: "Backups" },
  { to: "/security", label: "Security" },
  { to: "/settings", label: "Settings" },
];

export function App() {
  return (
    <BrowserRouter>
      <AuthProvider>
        <Routes>
          <Route path="/login" element={<LoginPage />} />
          <Route path="*" element={<RequireSession><Shell /></RequireSession>} />
        </Routes>
      </AuthProvider>
    </BrowserRouter>
  );
}

function RequireSession({ children }: { children: ReactNode }) {
  const { session, checking } = useAuth();
  const loc = useLocation();
  if (checking) return <div className="login-wrap"><Spinner label="Checking the session" /></div>;
  if (!session) {
    const next = loc.pathname + loc.search;
    return <Navigate to={`/login${next !== "/" ? `?next=${encodeURIComponent(next)}` : ""}`} replace />;
  }
  return <>{children}</>;
}

function ThemeToggle() {
  return (
    <button
      type="button"
      className="btn small"
      onClick={() => {
        const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
        document.documentElement.dataset.theme = next;
        localStorage.setItem("infracore.theme", next);
        window.dispatchEvent(new Event("themechange"));
      }}
    >
      Theme
    </button>
  );
}

function Shell() {
  const { session, logout } = useAuth();
  const navigate = useNavigate();
  useEffect(() => {
    document.title = "Infra-Core";
  }, []);
  return (
    <LiveProvider>
      <ToastProvider>
        <EventToasts />
        <div className="shell">
          <nav className="side" aria-label="Main">
            <div className="brand"><img src="/favicon.svg" width={22} height={22} alt="" />Infra-Core</div>
            {NAV.map((n) => (
              <NavLink key={n.to} to={n.to} end={n.to === "/"} className={({ isActive }) => `nav ${isActive ? "active" : ""}`}>
                {n.label}
              </NavLink>
            ))}
            <div className="foot">
              <LiveIndicator />
              <span data-testid="whoami">{session?.username} · {session?.role}</span>
              <span className="row">
                <ThemeToggle />
                <button type="button" className="btn small" onClick={async () => { await logout(); navigate("/login"); }}>
                  Log out
                </button>
              </span>
            </div>
          </nav>
          <main>
            <Suspense fallback={<Spinner label="Loading the page" />}>
              <Routes>
                <Route path="/" element={<Overview />} />
                <Route path="/services" element={<Services />} />
                <Route path="/services/:name" element={<ServiceDetail />} />
                <Route path="/deploys" element={<Deploys />} />
                <Route path="/deploys/:id" element={<Deploys />} />
                <Route path="/gateway" element={<Gateway />} />
                <Route path="/logs" element={<Logs />} />
                <Route path="/monitoring" element={<Monitoring />} />
                <Route path="/backups" element={<Backups />} />
                <Route path="/security" element={<Security />} />
                <Route path="/settings" element={<Settings />} />
                <Route path="*" element={<ErrorBox error={new Error("There is no such page.")} />} />
              </Routes>
            </Suspense>
          </main>
        </div>
      </ToastProvider>
    </LiveProvider>
  );
}
