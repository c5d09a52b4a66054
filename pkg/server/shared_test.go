package server

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/leakwatch/leakwatch/pkg/buildinfo"
	"github.com/leakwatch/leakwatch/pkg/metrics"
	"github.com/leakwatch/leakwatch/pkg/view"
	"github.com/leakwatch/leakwatch/test/promtool"
)

// stormSnapshot is a node at the default --max-containers: n live
// containers with distinct Kubernetes identities, a tenth of them leaking.
func stormSnapshot(n int) *view.Snapshot {
	snap := &view.Snapshot{Taken: t0, Agent: view.Agent{Ready: true, Collections: 1, Tracked: n}}
	for i := range n {
		cid := fmt.Sprintf("%064x", i+1)
		snap.Containers = append(snap.Containers, view.Container{
			ID: fmt.Sprint(1000 + i), MemcgID: uint64(1000 + i), Kind: "container", Runtime: "containerd",
			Cgroup:      fmt.Sprintf("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod%d.slice/cri-containerd-%s.scope", i, cid),
			ContainerID: cid, PodUID: fmt.Sprintf("pod-%d", i),
			Namespace: fmt.Sprintf("team-%d", i%40), Pod: fmt.Sprintf("app-%d-7f9c6d", i), Container: "app",
			Memory: view.Memory{Usage: uint64(i) << 20, Anon: uint64(i) << 19, LeakSignal: uint64(i) << 19, Limit: 1 << 30, PageFaults: uint64(i)},
			Verdict: view.Verdict{Leaking: i%10 == 0, GrowthBytesPerSecond: float64(i), Confidence: 0.5,
				TimeToLimit: time.Duration(i) * time.Second},
			OOMKills: uint64(i % 3), MappedBytes: uint64(i) << 18, FirstSeen: t0, LastSeen: t0,
		})
	}
	return snap
}

// countingPage counts the pages an Exposition writes.
type countingPage struct {
	*metrics.Exposition
	n atomic.Int64
}

func (p *countingPage) AppendText(b []byte) ([]byte, error) {
	p.n.Add(1)
	return p.Exposition.AppendText(b)
}

// sumWriter is a ResponseWriter that hashes the body, keeping it only when
// asked: fifty recorders holding 5 MB each would be the test's own storm.
type sumWriter struct {
	header http.Header
	status int
	sum    hash.Hash
	keep   *bytes.Buffer
}

func newSumWriter(keep bool) *sumWriter {
	w := &sumWriter{header: http.Header{}, sum: sha256.New()}
	if keep {
		w.keep = new(bytes.Buffer)
	}
	return w
}

func (w *sumWriter) Header() http.Header { return w.header }
func (w *sumWriter) WriteHeader(s int) {
	if w.status == 0 {
		w.status = s
	}
}

func (w *sumWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	if w.keep != nil {
		w.keep.Write(b)
	}
	return w.sum.Write(b)
}

// scrapeDuration is the one line that differs between two collections of
// the same view.
var scrapeDuration = regexp.MustCompile(`(?m)^leakwatch_scrape_duration_seconds .*$`)

// A scrape storm costs one collection per view: fifty concurrent scrapes of
// 2,000 containers share one build, allocate about what one scrape does, and
// all get the page a lone scrape gets.
func TestScrapeStormSharesOneCollection(t *testing.T) {
	const containers, scrapers = 2000, 50
	src := &fakeSource{snap: stormSnapshot(containers)}
	exp, err := metrics.NewExposition(src, buildinfo.Info{Version: "test", Revision: "abc", GoVersion: runtime.Version()}, prometheus.NewPedanticRegistry())
	if err != nil {
		t.Fatal(err)
	}
	var reg prometheus.Gatherer = exp

	// What a lone scrape served by promhttp, the way /metrics used to be
	// served, gives and costs.
	lone := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	ref := newSumWriter(true)
	lone.ServeHTTP(ref, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	lone.ServeHTTP(newSumWriter(false), httptest.NewRequest(http.MethodGet, "/metrics", nil))
	runtime.ReadMemStats(&after)
	perScrape := after.TotalAlloc - before.TotalAlloc

	g := &countingPage{Exposition: exp}
	s, err := New(Config{}, src, g, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The storm shares one build however slow the host: only the view
	// may decide when the page is built again.
	s.pages.maxAge = time.Hour
	h := s.Handler()

	ws := make([]*sumWriter, scrapers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range ws {
		ws[i] = newSumWriter(i == 0)
		wg.Go(func() {
			<-start
			h.ServeHTTP(ws[i], httptest.NewRequest(http.MethodGet, "/metrics", nil))
		})
	}
	close(start)
	wg.Wait()
	runtime.ReadMemStats(&after)
	stormAlloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("page %d bytes; one scrape allocates %d KiB, %d concurrent scrapes %d KiB",
		ref.keep.Len(), perScrape>>10, scrapers, stormAlloc>>10)

	if n := g.n.Load(); n != 1 {
		t.Errorf("%d concurrent scrapes of one view ran %d collections, want 1", scrapers, n)
	}
	for i, w := range ws {
		if w.status != http.StatusOK || !bytes.Equal(w.sum.Sum(nil), ws[0].sum.Sum(nil)) {
			t.Fatalf("scrape %d: status %d, body differs from scrape 0's: %v", i, w.status, !bytes.Equal(w.sum.Sum(nil), ws[0].sum.Sum(nil)))
		}
	}
	body := ws[0].keep.Bytes()
	if got, want := scrapeDuration.ReplaceAll(body, nil), scrapeDuration.ReplaceAll(ref.keep.Bytes(), nil); !bytes.Equal(got, want) {
		t.Errorf("shared page differs from a lone promhttp scrape (%d bytes, want %d)", len(got), len(want))
	}
	if ct, want := ws[0].header.Get("Content-Type"), ref.header.Get("Content-Type"); ct != want {
		t.Errorf("Content-Type %q, want promhttp's %q", ct, want)
	}
	if stormAlloc > 3*perScrape {
		t.Errorf("%d concurrent scrapes allocated %d KiB, want at most 3 lone scrapes' worth (%d KiB)", scrapers, stormAlloc>>10, 3*perScrape>>10)
	}
	promtool.CheckMetrics(t, body, false)

	// The gzip variant is the same page, still from the one collection.
	gz := newSumWriter(true)
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	h.ServeHTTP(gz, req)
	if enc := gz.header.Get("Content-Encoding"); enc != "gzip" {
		t.Fatalf("Accept-Encoding gzip answered with Content-Encoding %q", enc)
	}
	zr, err := gzip.NewReader(gz.keep)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(plain, body) {
		t.Errorf("gzip page decompresses to %d bytes that differ from the plain page's %d", len(plain), len(body))
	}
	if n := g.n.Load(); n != 1 {
		t.Errorf("gzip scrape of the same view ran a collection (%d in all)", n)
	}

	// A new view is a new page.
	src.set(stormSnapshot(containers))
	h.ServeHTTP(newSumWriter(false), httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if n := g.n.Load(); n != 2 {
		t.Errorf("scrape of a new view: %d collections in all, want 2", n)
	}
}

// The container list is built once per view and filter too.
func TestContainerListSharedPerViewAndFilter(t *testing.T) {
	src := &fakeSource{snap: stormSnapshot(2000)}
	s, err := New(Config{}, src, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	get := func(target string) []byte {
		t.Helper()
		w := newSumWriter(true)
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, target, nil))
		if w.status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", target, w.status, w.keep)
		}
		return w.keep.Bytes()
	}
	all := get("/api/v1/containers")
	leaking := get("/api/v1/containers?leaking=true")
	if bytes.Equal(all, leaking) || !bytes.Equal(get("/api/v1/containers"), all) {
		t.Fatal("filters share a page, or one view's list changes between requests")
	}
	if n := strings.Count(string(leaking), `"status":"leaking"`); n != 200 {
		t.Errorf("?leaking=true lists %d leaking containers, want 200", n)
	}
	next := stormSnapshot(2000)
	next.Containers = next.Containers[:10]
	src.set(next)
	if n := strings.Count(string(get("/api/v1/containers")), `"id":`); n != 10 {
		t.Errorf("list after a new view of 10 containers has %d", n)
	}
}
