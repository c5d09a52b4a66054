package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configgrpc"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"

	"github.com/leakwatch/leakwatch/test/agenttest"
	"github.com/leakwatch/leakwatch/test/cgtest"
)

// collector is an OTLP endpoint for the agent: the collector's own OTLP
// receiver, on a loopback port, feeding a sink. It speaks one protocol,
// grpc or http/protobuf, the agent's OTEL_EXPORTER_OTLP_PROTOCOL, which
// startCollector sets. It can be stopped and started again on the same
// port; the sink keeps everything received.
type collector struct {
	addr  string
	proto string
	sink  consumertest.LogsSink
	mu    sync.Mutex
	rcv   receiver.Logs // nil while stopped
}

// startCollector starts a receiver for proto and points the agents the test
// starts next at it (plain text, exports given up after 2 s).
func startCollector(t *testing.T, proto string) *collector {
	t.Helper()
	c := &collector{addr: agenttest.FreePort(t), proto: proto}
	c.start(t)
	t.Cleanup(func() { c.stop(t) })
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+c.addr)
	t.Setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", proto)
	t.Setenv("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "")
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	// Each export, retries included, gives up after 2 s: an outage shows up
	// as drops quickly.
	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2000")
	t.Setenv("OTEL_SDK_DISABLED", "")
	return c
}

func (c *collector) start(t *testing.T) {
	t.Helper()
	f := otlpreceiver.NewFactory()
	cfg := f.CreateDefaultConfig().(*otlpreceiver.Config)
	switch c.proto {
	case "grpc":
		grpcCfg := configgrpc.NewDefaultServerConfig()
		grpcCfg.NetAddr.Endpoint = c.addr
		cfg.Protocols.GRPC = configoptional.Some(grpcCfg)
		cfg.Protocols.HTTP = configoptional.None[otlpreceiver.HTTPConfig]()
	case "http/protobuf":
		// The receiver's own defaults (paths /v1/logs and so on), enabled.
		httpCfg := cfg.Protocols.HTTP.GetOrInsertDefault()
		httpCfg.ServerConfig.NetAddr.Endpoint = c.addr
		cfg.Protocols.GRPC = configoptional.None[configgrpc.ServerConfig]()
	default:
		t.Fatalf("collector: unknown protocol %q", c.proto)
	}
	set := receiver.Settings{
		ID: component.NewID(f.Type()),
		TelemetrySettings: component.TelemetrySettings{
			Logger:         zap.NewNop(),
			TracerProvider: tracenoop.NewTracerProvider(),
			MeterProvider:  metricnoop.NewMeterProvider(),
			Resource:       pcommon.NewResource(),
		},
		BuildInfo: component.NewDefaultBuildInfo(),
	}
	rcv, err := f.CreateLogs(context.Background(), set, cfg, &c.sink)
	if err != nil {
		t.Fatalf("making the OTLP receiver: %v", err)
	}
	// The port was free a moment ago; after a stop it may take a moment to
	// be bindable again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err = rcv.Start(context.Background(), noHost{}); err == nil {
			break
		}
		_ = rcv.Shutdown(context.Background())
		if time.Now().After(deadline) {
			t.Fatalf("starting the OTLP receiver on %s: %v", c.addr, err)
		}
		time.Sleep(200 * time.Millisecond)
		if rcv, err = f.CreateLogs(context.Background(), set, cfg, &c.sink); err != nil {
			t.Fatal(err)
		}
	}
	c.mu.Lock()
	c.rcv = rcv
	c.mu.Unlock()
}

func (c *collector) stop(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	rcv := c.rcv
	c.rcv = nil
	c.mu.Unlock()
	if rcv == nil {
		return
	}
	if err := rcv.Shutdown(context.Background()); err != nil {
		t.Errorf("stopping the OTLP receiver: %v", err)
	}
}

// noHost is a collector host without extensions.
type noHost struct{}

func (noHost) GetExtensions() map[component.ID]component.Component {
	return map[component.ID]component.Component{}
}

// event is one received log record with where it came from.
type event struct {
	resource  pcommon.Resource
	resSchema string
	scope     pcommon.InstrumentationScope
	record    plog.LogRecord
}

func (e event) attr(key string) string {
	v, ok := e.record.Attributes().Get(key)
	if !ok {
		return ""
	}
	return v.AsString()
}

// events returns the records received so far named name whose attribute
// key is value.
func (c *collector) events(name, key, value string) []event {
	var out []event
	for _, ld := range c.sink.AllLogs() {
		for i := range ld.ResourceLogs().Len() {
			rl := ld.ResourceLogs().At(i)
			for j := range rl.ScopeLogs().Len() {
				sl := rl.ScopeLogs().At(j)
				for k := range sl.LogRecords().Len() {
					e := event{rl.Resource(), rl.SchemaUrl(), sl.Scope(), sl.LogRecords().At(k)}
					if e.record.EventName() == name && e.attr(key) == value {
						out = append(out, e)
					}
				}
			}
		}
	}
	return out
}

// waitEvents waits up to timeout for at least one matching event.
func (c *collector) waitEvents(t *testing.T, timeout time.Duration, name, key, value string) []event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if evs := c.events(name, key, value); len(evs) > 0 {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event with %s=%s within %v (%d records received in all)",
				name, key, value, timeout, c.sink.LogRecordCount())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// String prints the event as the collector's debug exporter does at
// detailed verbosity.
func (e event) String() string {
	var b strings.Builder
	attrs := func(m pcommon.Map) {
		m.Range(func(k string, v pcommon.Value) bool {
			fmt.Fprintf(&b, "     -> %s: %s(%s)\n", k, v.Type(), v.AsString())
			return true
		})
	}
	fmt.Fprintf(&b, "ResourceLog #0\nResource SchemaURL: %s\nResource attributes:\n", e.resSchema)
	attrs(e.resource.Attributes())
	fmt.Fprintf(&b, "ScopeLogs #0\nInstrumentationScope %s %s\n", e.scope.Name(), e.scope.Version())
	r := e.record
	fmt.Fprintf(&b, "LogRecord #0\nObservedTimestamp: %s\nTimestamp: %s\n", r.ObservedTimestamp(), r.Timestamp())
	fmt.Fprintf(&b, "SeverityText: %s\nSeverityNumber: %s(%d)\n", r.SeverityText(), r.SeverityNumber(), r.SeverityNumber())
	fmt.Fprintf(&b, "EventName: %s\nBody: %s(%s)\nAttributes:\n", r.EventName(), r.Body().Type(), r.Body().AsString())
	attrs(r.Attributes())
	fmt.Fprintf(&b, "Trace ID: %s\nSpan ID: %s\nFlags: %d", r.TraceID(), r.SpanID(), r.Flags())
	return b.String()
}

// metricSum adds up the samples of one metric family in /metrics whose
// labels contain label ("" for all).
func (a *agent) metricSum(t *testing.T, name, label string) float64 {
	t.Helper()
	resp, err := http.Get(a.url + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for line := range strings.SplitSeq(string(body), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") || !strings.Contains(line, label) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("parsing %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

func (a *agent) ready(t *testing.T) bool {
	t.Helper()
	resp, err := http.Get(a.url + "/readyz")
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// oomKill runs memwork in a fresh 64 MiB cgroup until the kernel kills it.
// It waits for the agent to track the cgroup first: the agent names a kill's
// cgroup from what its last scan found, and a cgroup made and killed between
// two scans would go unnamed.
func oomKill(t *testing.T, a *agent, memwork string) (*cgtest.Group, *cgtest.Proc) {
	t.Helper()
	g := cgtest.New(t, 64*mib)
	p := g.Start(t, memwork)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, ok := a.containers(t)[g.Rel]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent does not track %s after 15s", g.Rel)
		}
		time.Sleep(250 * time.Millisecond)
	}
	p.Send(t, "oom")
	if st := p.Wait(t, 30*time.Second); st.Success() {
		t.Fatalf("memwork in %s exited cleanly, want OOM-killed", g.Rel)
	}
	return g, p
}

// The agent sends OOM kills and leaks as OpenTelemetry events to a real
// OTLP receiver, each kill once; with the collector away it keeps working
// and counts what it drops, and it delivers again once the collector is back.
func TestEventsOverOTLP(t *testing.T) {
	memwork, _ := cgtest.Workloads(t)
	col := startCollector(t, "grpc")
	a := startAgent(t, "--interval", "1s", "--detect-warm-up", "15s", "--detect-window", "5s", "--detect-persistence", "20s")
	start := time.Now()

	// A leak of 4 MiB/s runs throughout; the detector needs its warm-up.
	leakCG := cgtest.New(t, 1024*mib)
	leaker := leakCG.Start(t, memwork)
	defer leaker.Repeat(t, "leak 1024 1", 250*time.Millisecond, 600)()

	// (a) An OOM kill arrives once, with its process, cgroup and trigger.
	oomCG, victim := oomKill(t, a, memwork)
	evs := col.waitEvents(t, 15*time.Second, "leakwatch.oom.kill", "leakwatch.cgroup", oomCG.Rel)
	t.Logf("OOM kill event received %v after the start:\n%s", time.Since(start).Round(time.Second), evs[0])
	ev := evs[0]
	if got := ev.attr("process.pid"); got != strconv.Itoa(victim.PID) {
		t.Errorf("process.pid = %q, want %d", got, victim.PID)
	}
	if got := ev.attr("leakwatch.oom.trigger"); got != "container" {
		t.Errorf("leakwatch.oom.trigger = %q, want container", got)
	}
	if got := ev.record.SeverityNumber(); got != plog.SeverityNumberError {
		t.Errorf("severity %v, want Error", got)
	}
	if got, _ := ev.resource.Attributes().Get("service.name"); got.AsString() != "leakwatch" {
		t.Errorf("resource service.name = %q, want leakwatch", got.AsString())
	}
	if u := ev.attr("leakwatch.profile.url"); u != "" && !strings.HasPrefix(u, a.url+"/api/v1/oomkills/") {
		t.Errorf("leakwatch.profile.url = %q, want one under %s", u, a.url)
	}
	time.Sleep(4 * time.Second)
	if n := len(col.events("leakwatch.oom.kill", "leakwatch.cgroup", oomCG.Rel)); n != 1 {
		t.Errorf("%d OOM kill events for %s, want exactly 1", n, oomCG.Rel)
	}

	// (b) The leak is detected.
	evs = col.waitEvents(t, 90*time.Second, "leakwatch.leak.detected", "leakwatch.cgroup", leakCG.Rel)
	ev = evs[0]
	t.Logf("leak detected event received %v after the start: %s", time.Since(start).Round(time.Second), ev.record.Body().AsString())
	if g, err := strconv.ParseFloat(ev.attr("leakwatch.growth_bytes_per_second"), 64); err != nil || g < 2*mib || g > 6*mib {
		t.Errorf("leakwatch.growth_bytes_per_second = %q, want about 4 MiB/s", ev.attr("leakwatch.growth_bytes_per_second"))
	}
	if got := ev.record.SeverityNumber(); got != plog.SeverityNumberWarn {
		t.Errorf("severity %v, want Warn", got)
	}

	// (c) With the collector away, the agent stays ready and counts drops.
	col.stop(t)
	dropped := a.metricSum(t, "leakwatch_events_dropped_total", "")
	oomCG2, _ := oomKill(t, a, memwork)
	deadline := time.Now().Add(20 * time.Second)
	for a.metricSum(t, "leakwatch_events_dropped_total", "") <= dropped {
		if !a.ready(t) {
			t.Fatal("agent not ready while the collector is away")
		}
		if time.Now().After(deadline) {
			t.Fatalf("leakwatch_events_dropped_total still %v 20s after an OOM kill with the collector away", dropped)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("with the collector away: leakwatch_events_dropped_total %v -> %v, export_failed %v",
		dropped, a.metricSum(t, "leakwatch_events_dropped_total", ""),
		a.metricSum(t, "leakwatch_events_dropped_total", `reason="export_failed"`))
	if !a.ready(t) {
		t.Error("agent not ready after dropping events")
	}
	if n := len(col.events("leakwatch.oom.kill", "leakwatch.cgroup", oomCG2.Rel)); n != 0 {
		t.Errorf("%d events for the kill while the collector was away, want 0", n)
	}

	// Back on the same port, new events arrive.
	col.start(t)
	oomCG3, _ := oomKill(t, a, memwork)
	col.waitEvents(t, 30*time.Second, "leakwatch.oom.kill", "leakwatch.cgroup", oomCG3.Rel)
	if sent := a.metricSum(t, "leakwatch_events_sent_total", `event="leakwatch.oom.kill"`); sent < 2 {
		t.Errorf("leakwatch_events_sent_total{event=leakwatch.oom.kill} = %v, want at least 2", sent)
	}
	t.Logf("events delivered again %v after the start", time.Since(start).Round(time.Second))
	a.promtoolCheck(t)
}

// The other OTLP transport, http/protobuf (the specification's default),
// delivers to a real receiver too: an OOM kill, with its process.
func TestEventsOverOTLPHTTP(t *testing.T) {
	memwork, _ := cgtest.Workloads(t)
	col := startCollector(t, "http/protobuf")
	a := startAgent(t, "--interval", "1s")
	g, victim := oomKill(t, a, memwork)
	evs := col.waitEvents(t, 15*time.Second, "leakwatch.oom.kill", "leakwatch.cgroup", g.Rel)
	if got := evs[0].attr("process.pid"); got != strconv.Itoa(victim.PID) {
		t.Errorf("process.pid = %q, want %d", got, victim.PID)
	}
	if sent := a.metricSum(t, "leakwatch_events_sent_total", `event="leakwatch.oom.kill"`); sent < 1 {
		t.Errorf("leakwatch_events_sent_total{event=leakwatch.oom.kill} = %v over http/protobuf, want at least 1", sent)
	}
}
