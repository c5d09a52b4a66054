package events

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/leakwatch/leakwatch/pkg/view"
)

// Event names.
const (
	LeakDetected = "leakwatch.leak.detected"
	LeakResolved = "leakwatch.leak.resolved"
	OOMKill      = "leakwatch.oom.kill"
)

const (
	// scopeName names the instrumentation scope of every event.
	scopeName = "github.com/leakwatch/leakwatch/pkg/events"
	// defaultPoll is how often the view is read when Config.Poll is 0.
	defaultPoll = time.Second
	// queueSize bounds the records waiting for export.
	queueSize = 1024
	// closeTimeout bounds the flush at Close.
	closeTimeout = 5 * time.Second
)

// Config is what the daemon tells the exporter; the OTLP connection itself is
// configured by the OTEL_EXPORTER_OTLP_* environment variables only.
type Config struct {
	// BaseURL is where others reach this agent's HTTP API, e.g.
	// "http://10.0.0.5:9753" or, with TLS, "https://10.0.0.5:9753" (see
	// BaseURL). OOM kill events link the profile
	// retained for the kill under it; empty means no link.
	BaseURL string
	// Version is the agent's version, sent as service.version.
	Version string
	// Poll is the time between two reads of the view; 0 means one second.
	Poll time.Duration
}

// Exporter turns changes of the view into events and exports them.
type Exporter struct {
	cfg      Config
	src      view.Source
	log      *slog.Logger
	provider *sdklog.LoggerProvider
	logger   otellog.Logger
	stats    *stats
	closeIn  time.Duration

	// Run's goroutine alone touches these.
	last    *view.Snapshot
	leaking map[string]bool // ids of the containers leaking at the last poll
	lastSeq uint64          // highest OOM kill Seq handled

	closeOnce sync.Once
	closeErr  error
}

// New returns an exporter of src's events, or nil and no error when no OTLP
// endpoint is configured.
func New(cfg Config, src view.Source, log *slog.Logger) (*Exporter, error) {
	if off := disabled(); off != "" {
		log.Info("OpenTelemetry events off", "reason", off)
		return nil, nil
	}
	proto := protocol()
	exp, err := newOTLPExporter(context.Background(), proto)
	if err != nil {
		return nil, err
	}
	routeSDKErrors(log)
	e, err := newExporter(cfg, src, log, exp, settings{
		queueSize: queueSize, exportInterval: time.Second, closeTimeout: closeTimeout,
	})
	if err != nil {
		_ = exp.Shutdown(context.Background())
		return nil, err
	}
	log.Info("OpenTelemetry events on", "protocol", proto, "endpoint", redacted(endpoint()), "profile_links", cfg.BaseURL)
	return e, nil
}

// settings are the exporter's internal bounds, smaller in tests.
type settings struct {
	queueSize      int
	exportInterval time.Duration
	closeTimeout   time.Duration
}

func newExporter(cfg Config, src view.Source, log *slog.Logger, exp sdklog.Exporter, s settings) (*Exporter, error) {
	if cfg.Poll <= 0 {
		cfg.Poll = defaultPoll
	}
	res, err := newResource(cfg.Version)
	if err != nil {
		return nil, err
	}
	st := &stats{limit: int64(s.queueSize)}
	counting := &countingExporter{next: exp, stats: st, log: log}
	batch := sdklog.NewBatchProcessor(counting,
		sdklog.WithMaxQueueSize(s.queueSize),
		sdklog.WithExportMaxBatchSize(min(512, s.queueSize)),
		sdklog.WithExportInterval(s.exportInterval),
	)
	provider := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(batch))
	return &Exporter{
		cfg:      cfg,
		src:      src,
		log:      log,
		provider: provider,
		logger: provider.Logger(scopeName,
			otellog.WithInstrumentationVersion(cfg.Version),
			otellog.WithSchemaURL(semconv.SchemaURL)),
		stats:   st,
		closeIn: s.closeTimeout,
		leaking: map[string]bool{},
	}, nil
}

// Run polls the view until ctx ends. On a nil Exporter (events off) it just
// waits for ctx, so the daemon can run it unconditionally.
func (e *Exporter) Run(ctx context.Context) error {
	if e == nil {
		<-ctx.Done()
		return nil
	}
	tick := time.NewTicker(e.cfg.Poll)
	defer tick.Stop()
	for {
		e.poll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Close flushes what is queued, for at most five seconds, and stops the
// export. It is idempotent, and a no-op on a nil Exporter.
func (e *Exporter) Close() error {
	if e == nil {
		return nil
	}
	e.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), e.closeIn)
		defer cancel()
		e.closeErr = e.provider.Shutdown(ctx)
		if n := e.stats.abandon(); n > 0 {
			e.log.Warn("events not exported before shutdown", "dropped", n)
		}
		if e.closeErr != nil && errors.Is(e.closeErr, context.DeadlineExceeded) {
			// Not a failure of the agent: the collector was slow or away.
			e.closeErr = nil
		}
	})
	return e.closeErr
}

// poll sends the events of one new snapshot.
func (e *Exporter) poll(ctx context.Context) {
	snap := e.src.Snapshot()
	if snap == nil || snap == e.last {
		return
	}
	e.last = snap

	leaking := make(map[string]bool, len(e.leaking))
	for i := range snap.Containers {
		c := &snap.Containers[i]
		if c.Gone {
			// Gone, like left: its verdict ended because nothing runs
			// in it, which resolves nothing.
			continue
		}
		was := e.leaking[c.ID]
		if c.Verdict.Leaking {
			leaking[c.ID] = true
		}
		switch {
		case c.Verdict.Leaking && !was:
			e.emit(ctx, leakRecord(LeakDetected, c, snap.Taken))
		case !c.Verdict.Leaking && was:
			e.emit(ctx, leakRecord(LeakResolved, c, snap.Taken))
		}
	}
	e.leaking = leaking

	for i := range snap.OOMKills {
		k := &snap.OOMKills[i]
		if k.Seq <= e.lastSeq {
			continue
		}
		if missed := k.Seq - e.lastSeq - 1; missed > 0 {
			e.stats.drop(reasonMissed, missed)
		}
		e.lastSeq = k.Seq
		e.emit(ctx, oomRecord(k, e.cfg.BaseURL))
	}
}

// emit hands a record to the batch processor unless its queue is full. Only
// Run's goroutine emits, so the check and the count cannot interleave with
// another emit.
func (e *Exporter) emit(ctx context.Context, r otellog.Record) {
	if !e.stats.admit() {
		e.stats.drop(reasonQueueFull, 1)
		return
	}
	e.logger.Emit(ctx, r)
}

// BaseURL is the URL of the HTTP API served on listen (host:port) with
// scheme, "https" when the web config turns on TLS. An unspecified host
// (":9753", "0.0.0.0:9753", "[::]:9753") is replaced with the host name,
// the best guess at an address others can reach; in Kubernetes the agent
// listens on its pod IP, which is used as it is.
func BaseURL(scheme, listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if host, err = os.Hostname(); err != nil {
			return ""
		}
	}
	return (&url.URL{Scheme: scheme, Host: net.JoinHostPort(host, port)}).String()
}

// redacted hides a password in an endpoint URL before it is logged.
func redacted(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}

// disabled says why events are off, or "" when they are on.
func disabled() string {
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		return "OTEL_SDK_DISABLED is true"
	}
	if endpoint() == "" {
		return "neither OTEL_EXPORTER_OTLP_ENDPOINT nor OTEL_EXPORTER_OTLP_LOGS_ENDPOINT is set"
	}
	return ""
}

// endpoint is the configured OTLP endpoint for logs, the specific variable first.
func endpoint() string {
	for _, v := range []string{"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if s := strings.TrimSpace(os.Getenv(v)); s != "" {
			return s
		}
	}
	return ""
}
