package events

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/attribute"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"

	"github.com/leakwatch/leakwatch/pkg/view"
)

// fakeSource serves whatever snapshot the test set last.
type fakeSource struct {
	mu   sync.Mutex
	snap *view.Snapshot
}

func (f *fakeSource) set(s *view.Snapshot) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snap = s
}

func (f *fakeSource) Snapshot() *view.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snap
}

func (f *fakeSource) Series(string) ([]view.Point, bool) { return nil, false }

// memExporter keeps what it is given, or fails, or blocks until released.
type memExporter struct {
	mu      sync.Mutex
	records []sdklog.Record
	fail    bool
	block   chan struct{} // when non-nil, Export waits for it to close
}

func (m *memExporter) Export(ctx context.Context, rs []sdklog.Record) error {
	if m.block != nil {
		select {
		case <-m.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("collector unavailable")
	}
	for _, r := range rs {
		m.records = append(m.records, r.Clone())
	}
	return nil
}

func (*memExporter) Shutdown(context.Context) error   { return nil }
func (*memExporter) ForceFlush(context.Context) error { return nil }

func (m *memExporter) take() []sdklog.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	rs := m.records
	m.records = nil
	return rs
}

var quiet = slog.New(slog.DiscardHandler)

func newTest(t *testing.T, exp *memExporter, queue int) (*Exporter, *fakeSource) {
	t.Helper()
	src := &fakeSource{}
	e, err := newExporter(Config{BaseURL: "http://node-a:9753", Version: "v1.2.3"}, src, quiet, exp,
		settings{queueSize: queue, exportInterval: time.Hour, closeTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e, src
}

// step polls one snapshot and returns the records it exported.
func step(t *testing.T, e *Exporter, src *fakeSource, exp *memExporter, s *view.Snapshot) []sdklog.Record {
	t.Helper()
	if s != nil {
		src.set(s)
	}
	e.poll(context.Background())
	if err := e.provider.ForceFlush(context.Background()); err != nil && !exp.fail {
		t.Fatal(err)
	}
	return exp.take()
}

func container(id string, leaking bool) view.Container {
	return view.Container{
		ID: id, Cgroup: "/kubepods.slice/" + id, Container: "app-" + id,
		Memory:  view.Memory{LeakSignal: 300 << 20, Limit: 1 << 30},
		Verdict: view.Verdict{Leaking: leaking, GrowthBytesPerSecond: 4 << 20, Confidence: 0.9, TimeToLimit: 3 * time.Minute},
	}
}

// gone is a container as the agent reports it once its cgroup is gone: its
// verdict ended, the one it went with kept apart.
func gone(id string) view.Container {
	c := container(id, false)
	c.Verdict = view.Verdict{TimeToLimit: -1}
	c.Gone, c.WasLeaking = true, true
	return c
}

func snapshot(cs ...view.Container) *view.Snapshot {
	return &view.Snapshot{Taken: time.Unix(1_800_000_000, 0), Containers: cs}
}

// summary is "event:container-id" for each record, in order.
func summary(rs []sdklog.Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.EventName()+":"+attrs(r)[string(keyID)].String())
	}
	return out
}

func attrs(r sdklog.Record) map[string]attribute.Value {
	m := map[string]attribute.Value{}
	r.WalkAttributes(func(kv attribute.KeyValue) bool {
		m[string(kv.Key)] = kv.Value
		return true
	})
	return m
}

func TestLeakTransitions(t *testing.T) {
	exp := &memExporter{}
	e, src := newTest(t, exp, 64)
	steps := []struct {
		name string
		snap *view.Snapshot
		want []string
	}{
		// The first snapshot is the baseline: what leaks already is announced.
		{"baseline", snapshot(container("1", false), container("2", true)), []string{LeakDetected + ":2"}},
		{"same snapshot again", nil, nil},
		{"no change", snapshot(container("1", false), container("2", true)), nil},
		{"one starts leaking", snapshot(container("1", true), container("2", true)), []string{LeakDetected + ":1"}},
		{"one stops", snapshot(container("1", false), container("2", true)), []string{LeakResolved + ":1"}},
		// Leaving the view is no resolution; coming back leaking is news.
		{"leaker leaves", snapshot(container("1", false)), nil},
		{"leaker returns", snapshot(container("1", false), container("2", true)), []string{LeakDetected + ":2"}},
		{"new container already leaking", snapshot(container("1", false), container("2", true), container("3", true)),
			[]string{LeakDetected + ":3"}},
		{"both stop", snapshot(container("1", false), container("2", false), container("3", false)),
			[]string{LeakResolved + ":2", LeakResolved + ":3"}},
		// Going, like leaving, is no resolution: a gone container is not
		// leaking any more, but nothing was fixed.
		{"3 leaks again", snapshot(container("1", false), container("2", false), container("3", true)),
			[]string{LeakDetected + ":3"}},
		{"3 goes", snapshot(container("1", false), container("2", false), gone("3")), nil},
		{"3 is forgotten", snapshot(container("1", false), container("2", false)), nil},
	}
	for _, s := range steps {
		if got := summary(step(t, e, src, exp, s.snap)); !slices.Equal(got, s.want) {
			t.Errorf("%s: events %v, want %v", s.name, got, s.want)
		}
	}
	if n := len(e.leaking); n != 0 {
		t.Errorf("%d containers remembered as leaking, want 0", n)
	}
}

func kill(seq uint64) view.OOMKill {
	return view.OOMKill{
		Seq: seq, Time: time.Unix(1_800_000_100+int64(seq), 0), ID: "42", Cgroup: "/leakwatch-test/c", PID: uint32(1000 + seq),
		Comm: "memwork", Trigger: "container", TriggerCgroup: "/leakwatch-test/c",
		ProfileURL: "/api/v1/oomkills/1/profile",
	}
}

func TestOOMKillsExactlyOnce(t *testing.T) {
	exp := &memExporter{}
	e, src := newTest(t, exp, 64)
	seqs := func(rs []sdklog.Record) []int64 {
		var out []int64
		for _, r := range rs {
			if r.EventName() != OOMKill {
				t.Errorf("event %q, want %q", r.EventName(), OOMKill)
			}
			out = append(out, attrs(r)[string(keySeq)].AsInt64())
		}
		return out
	}
	withKills := func(ks ...view.OOMKill) *view.Snapshot {
		s := snapshot()
		s.OOMKills = ks
		return s
	}
	steps := []struct {
		name string
		snap *view.Snapshot
		want []int64
	}{
		{"none yet", withKills(), nil},
		{"two kills", withKills(kill(1), kill(2)), []int64{1, 2}},
		{"same kills, new snapshot", withKills(kill(1), kill(2)), nil},
		{"one more", withKills(kill(1), kill(2), kill(3)), []int64{3}},
		// 4 and 5 left the bounded list before a poll saw them.
		{"list overflowed", withKills(kill(6), kill(7)), []int64{6, 7}},
		{"older kills only", withKills(kill(7)), nil},
	}
	for _, s := range steps {
		if got := seqs(step(t, e, src, exp, s.snap)); !slices.Equal(got, s.want) {
			t.Errorf("%s: kills sent %v, want %v", s.name, got, s.want)
		}
	}
	if got := e.stats.dropped[reasonMissed].Load(); got != 2 {
		t.Errorf("dropped{missed} = %d, want 2", got)
	}
	if got := e.stats.sent[2].Load(); got != 5 {
		t.Errorf("sent{%s} = %d, want 5", OOMKill, got)
	}
}

func TestAttributes(t *testing.T) {
	t.Setenv("K8S_NODE_NAME", "")
	t.Setenv("NODE_NAME", "node-a")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
	exp := &memExporter{}
	e, src := newTest(t, exp, 64)

	pod := container("7", true)
	pod.Namespace, pod.Pod, pod.PodUID, pod.Container = "shop", "cart-5d9f", "0b4e5c9a-1111-2222-3333-444455556666", "cart"
	pod.ContainerID = strings.Repeat("ab", 32)
	noLimit := container("8", true)
	noLimit.Memory.Limit, noLimit.Verdict.TimeToLimit = 0, -1
	k := kill(1)
	k.Memory = view.Memory{Usage: 64 << 20, Anon: 60 << 20, File: 1 << 20, Kernel: 3 << 20, Limit: 64 << 20}
	k.AnonRSSBytes, k.FileRSSBytes, k.ShmemRSSBytes, k.TotalVMBytes = 60<<20, 2<<20, 0, 80<<20
	k.TopStacks = []string{"60.0MiB oom_forever < main", "1.0MiB main"}
	s := snapshot(pod, noLimit)
	s.OOMKills = []view.OOMKill{k}

	rs := step(t, e, src, exp, s)
	if len(rs) != 3 {
		t.Fatalf("%d records, want 3: %v", len(rs), summary(rs))
	}
	want := []struct {
		event    string
		severity otellog.Severity
		text     string
		body     string
		attrs    map[string]string // Emit() of each value; exactly these
	}{
		{LeakDetected, otellog.SeverityWarn, "WARN", "memory leak detected in shop/cart-5d9f/cart: growing 4.0 MiB/s (confidence 0.90)", map[string]string{
			"k8s.namespace.name": "shop", "k8s.pod.name": "cart-5d9f", "k8s.pod.uid": "0b4e5c9a-1111-2222-3333-444455556666",
			"k8s.container.name": "cart", "container.id": strings.Repeat("ab", 32),
			"leakwatch.cgroup": "/kubepods.slice/7", "leakwatch.container.id": "7",
			"leakwatch.growth_bytes_per_second": "4.194304e+06", "leakwatch.confidence": "0.9",
			"leakwatch.memory_bytes": "314572800", "leakwatch.memory.limit_bytes": "1073741824",
			"leakwatch.time_to_limit_seconds": "180",
		}},
		{LeakDetected, otellog.SeverityWarn, "WARN", "memory leak detected in app-8: growing 4.0 MiB/s (confidence 0.90)", map[string]string{
			"leakwatch.container.name": "app-8",
			"leakwatch.cgroup":         "/kubepods.slice/8", "leakwatch.container.id": "8",
			"leakwatch.growth_bytes_per_second": "4.194304e+06", "leakwatch.confidence": "0.9",
			"leakwatch.memory_bytes": "314572800",
		}},
		{OOMKill, otellog.SeverityError, "ERROR", "OOM kill of memwork (pid 1001) in /leakwatch-test/c: its memory limit was reached", map[string]string{
			"leakwatch.cgroup": "/leakwatch-test/c", "leakwatch.container.id": "42",
			"process.pid": "1001", "process.executable.name": "memwork",
			"leakwatch.oom.seq": "1", "leakwatch.oom.trigger": "container", "leakwatch.oom.trigger_cgroup": "/leakwatch-test/c",
			"leakwatch.memory.usage_bytes": "67108864", "leakwatch.memory.anon_bytes": "62914560",
			"leakwatch.memory.file_bytes": "1048576", "leakwatch.memory.kernel_bytes": "3145728",
			"leakwatch.memory.limit_bytes":      "67108864",
			"leakwatch.process.rss.anon_bytes":  "62914560",
			"leakwatch.process.rss.file_bytes":  "2097152",
			"leakwatch.process.rss.shmem_bytes": "0", "leakwatch.process.virtual_memory_bytes": "83886080",
			"leakwatch.oom.top_stacks": "60.0MiB oom_forever < main | 1.0MiB main",
			"leakwatch.profile.url":    "http://node-a:9753/api/v1/oomkills/1/profile",
		}},
	}
	for i, w := range want {
		r := rs[i]
		if r.EventName() != w.event || r.Severity() != w.severity || r.SeverityText() != w.text || r.Body().AsString() != w.body {
			t.Errorf("record %d: %s %v %s %q, want %s %v %s %q", i, r.EventName(), r.Severity(), r.SeverityText(), r.Body().AsString(),
				w.event, w.severity, w.text, w.body)
		}
		got := map[string]string{}
		for k, v := range attrs(r) {
			got[k] = v.String()
			if v.Type() == attribute.STRINGSLICE {
				got[k] = strings.Join(v.AsStringSlice(), " | ")
			}
		}
		for k, v := range w.attrs {
			if got[k] != v {
				t.Errorf("record %d (%s): %s = %q, want %q", i, w.event, k, got[k], v)
			}
		}
		for k := range got {
			if _, ok := w.attrs[k]; !ok {
				t.Errorf("record %d (%s): unexpected attribute %s = %q", i, w.event, k, got[k])
			}
		}
	}
	if ts := rs[2].Timestamp(); !ts.Equal(k.Time) {
		t.Errorf("OOM kill timestamp %v, want the kill's %v", ts, k.Time)
	}

	res := map[string]string{}
	for _, kv := range rs[0].Resource().Attributes() {
		res[string(kv.Key)] = kv.Value.String()
	}
	host, _ := os.Hostname()
	for k, v := range map[string]string{
		"service.name": "leakwatch", "service.version": "v1.2.3", "host.name": host,
		"k8s.node.name": "node-a", "deployment.environment.name": "test", "telemetry.sdk.language": "go",
	} {
		if res[k] != v {
			t.Errorf("resource %s = %q, want %q", k, res[k], v)
		}
	}
	if scope := rs[0].InstrumentationScope(); scope.Name != scopeName || scope.Version != "v1.2.3" {
		t.Errorf("scope %+v, want %s v1.2.3", scope, scopeName)
	}
}

func TestDisabledWithoutEndpoint(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "")
	e, err := New(Config{}, &fakeSource{}, quiet)
	if e != nil || err != nil {
		t.Fatalf("New without endpoint = %v, %v; want nil, nil", e, err)
	}
	// A nil exporter runs until ctx ends and closes without complaint.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := e.Run(ctx); err != nil {
		t.Errorf("nil Run: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Errorf("nil Close: %v", err)
	}

	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_SDK_DISABLED", "true")
	if e, err := New(Config{}, &fakeSource{}, quiet); e != nil || err != nil {
		t.Errorf("New with OTEL_SDK_DISABLED=true = %v, %v; want nil, nil", e, err)
	}
}

func TestProtocols(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_SDK_DISABLED", "")
	for _, tc := range []struct {
		logs, all string
		want      string // "" for an error
	}{
		{"", "", protoHTTPProtobuf},
		{"", "grpc", protoGRPC},
		{"http/protobuf", "grpc", protoHTTPProtobuf},
		{"grpc", "http/protobuf", protoGRPC},
		{"", "http/json", ""},
	} {
		t.Setenv("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", tc.logs)
		t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", tc.all)
		if got := protocol(); tc.want != "" && got != tc.want {
			t.Errorf("protocol with LOGS=%q, all=%q: %q, want %q", tc.logs, tc.all, got, tc.want)
		}
		e, err := New(Config{}, &fakeSource{}, quiet)
		if (err == nil) != (tc.want != "") {
			t.Errorf("New with LOGS=%q, all=%q: error %v", tc.logs, tc.all, err)
		}
		if err == nil {
			if e == nil {
				t.Fatalf("New with an endpoint returned nil")
			}
			if err := e.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if err := e.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		}
	}
}

func TestFailedExportsAreCounted(t *testing.T) {
	exp := &memExporter{fail: true}
	e, src := newTest(t, exp, 64)
	step(t, e, src, exp, snapshot(container("1", true), container("2", true)))
	if got := e.stats.dropped[reasonExportFailed].Load(); got != 2 {
		t.Errorf("dropped{export_failed} = %d, want 2", got)
	}
	exp.mu.Lock()
	exp.fail = false
	exp.mu.Unlock()
	if got := summary(step(t, e, src, exp, snapshot(container("1", false), container("2", true)))); !slices.Equal(got, []string{LeakResolved + ":1"}) {
		t.Errorf("after recovery: %v, want the resolution only", got)
	}
	want := `
# HELP leakwatch_events_dropped_total OpenTelemetry events lost, by reason: queue_full (the export queue was full), export_failed (the collector refused them or did not answer in time, retries included), shutdown (still queued when the agent stopped), missed (OOM kills that left the agent's view before they were sent).
# TYPE leakwatch_events_dropped_total counter
leakwatch_events_dropped_total{reason="export_failed"} 2
leakwatch_events_dropped_total{reason="missed"} 0
leakwatch_events_dropped_total{reason="queue_full"} 0
leakwatch_events_dropped_total{reason="shutdown"} 0
# HELP leakwatch_events_sent_total OpenTelemetry events the collector accepted, by event name.
# TYPE leakwatch_events_sent_total counter
leakwatch_events_sent_total{event="leakwatch.leak.detected"} 0
leakwatch_events_sent_total{event="leakwatch.leak.resolved"} 1
leakwatch_events_sent_total{event="leakwatch.oom.kill"} 0
`
	if err := testutil.CollectAndCompare(e.Collector(), strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.CollectAndLint(e.Collector()); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// A stuck collector never blocks the poll: past the queue's bound, events
// are dropped and counted, and what is still queued at Close is counted too.
func TestFullQueueDropsWithoutBlocking(t *testing.T) {
	exp := &memExporter{block: make(chan struct{})}
	e, src := newTest(t, exp, 4)
	var cs []view.Container
	for i := range 10 {
		cs = append(cs, container(string(rune('a'+i)), true))
	}
	src.set(snapshot(cs...))
	done := make(chan struct{})
	go func() {
		e.poll(context.Background())
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("poll blocked on a stuck exporter")
	}
	if got := e.stats.dropped[reasonQueueFull].Load(); got != 6 {
		t.Errorf("dropped{queue_full} = %d, want 6", got)
	}
	start := time.Now()
	if err := e.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v, want at most about its 1s bound", d)
	}
	// The four queued ones fail in the final flush or are abandoned after
	// it, depending on whether the exporter's goroutine had taken them.
	if got := e.stats.dropped[reasonShutdown].Load() + e.stats.dropped[reasonExportFailed].Load(); got != 4 {
		t.Errorf("dropped{shutdown} + dropped{export_failed} = %d, want 4", got)
	}
	close(exp.block)
}

func TestBaseURL(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	// The host and port each listen address is reached at.
	for listen, hostPort := range map[string]string{
		"127.0.0.1:9753":  "127.0.0.1:9753",
		"10.1.2.3:9753":   "10.1.2.3:9753",
		"[fd00::5]:9753":  "[fd00::5]:9753",
		":9753":           host + ":9753",
		"0.0.0.0:9753":    host + ":9753",
		"[::]:9753":       host + ":9753",
		"node-a.lan:9753": "node-a.lan:9753",
		"no-port":         "",
	} {
		for _, scheme := range []string{"http", "https"} {
			want := ""
			if hostPort != "" {
				want = scheme + "://" + hostPort
			}
			if got := BaseURL(scheme, listen); got != want {
				t.Errorf("BaseURL(%q, %q) = %q, want %q", scheme, listen, got, want)
			}
		}
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[float64]string{0: "0 B", 512: "512 B", 4 << 20: "4.0 MiB", 1.5 * (1 << 30): "1.5 GiB", -2048: "-2.0 KiB"} {
		if got := bytes(n); got != want {
			t.Errorf("bytes(%v) = %q, want %q", n, got, want)
		}
	}
}
