package server

import "github.com/prometheus/client_golang/prometheus"

// metricsNamespace prefixes the server's metrics like the agent's.
const metricsNamespace = "leakwatch"

// serverMetrics are the server's own metrics: what it refused and how it
// is exposed.
type serverMetrics struct {
	webConfigRefused  prometheus.Counter
	unauthenticated   prometheus.Gauge
	connsRejected     prometheus.Counter
	connsEvicted      prometheus.Counter
	tlsHandshakeFails prometheus.Counter
}

func newServerMetrics() *serverMetrics {
	return &serverMetrics{
		webConfigRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "web", Name: "config_refused_total",
			Help: "Contents of the web config file refused while running because they grant no protection (or cannot be read); the last good file stays in force.",
		}),
		unauthenticated: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Subsystem: "web", Name: "unauthenticated",
			Help: "1 when the agent serves beyond loopback without a web config file, so anyone who reaches it reads every endpoint.",
		}),
		connsRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "http", Name: "connections_rejected_total",
			Help: "Connections closed at once because the cap on open connections was reached and none was idle.",
		}),
		connsEvicted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "http", Name: "connections_evicted_total",
			Help: "Idle keep-alive connections closed to make room for a new one under the cap on open connections.",
		}),
		tlsHandshakeFails: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: "http", Name: "tls_handshake_errors_total",
			Help: "TLS handshakes that failed (port scans, clients that do not trust the certificate, plain HTTP on the TLS port).",
		}),
	}
}

func (m *serverMetrics) all() []prometheus.Collector {
	return []prometheus.Collector{m.webConfigRefused, m.unauthenticated, m.connsRejected, m.connsEvicted, m.tlsHandshakeFails}
}

func (m *serverMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.all() {
		c.Describe(ch)
	}
}

func (m *serverMetrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.all() {
		c.Collect(ch)
	}
}
