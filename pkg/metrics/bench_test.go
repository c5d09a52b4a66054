package metrics

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/leakwatch/leakwatch/pkg/view"
)

// benchSnapshot is a view of n Kubernetes containers.
func benchSnapshot(n int) *view.Snapshot {
	snap := testSnapshot()
	snap.Containers = make([]view.Container, n)
	for i := range snap.Containers {
		ct := podContainer()
		ct.ID = fmt.Sprint(1000 + i)
		ct.ContainerID = fmt.Sprintf("%064x", i)
		ct.Cgroup = fmt.Sprintf("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod%d.slice/cri-containerd-%064x.scope", i, i)
		ct.Pod = fmt.Sprintf("cart-%d", i)
		snap.Containers[i] = ct
	}
	return snap
}

// BenchmarkPage is one /metrics page as the agent builds it (Exposition's
// text) with n containers; BenchmarkScrape is the same through a registry
// and promhttp, the way it was served before.
func BenchmarkPage(b *testing.B) {
	for _, n := range []int{100, 500, 2000} {
		b.Run(fmt.Sprintf("containers=%d", n), func(b *testing.B) {
			e, err := NewExposition(&fakeSource{snap: benchSnapshot(n)}, testInfo, prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			var size int
			b.ReportAllocs()
			for b.Loop() {
				page, err := e.AppendText(nil)
				if err != nil {
					b.Fatal(err)
				}
				size = len(page)
			}
			b.ReportMetric(float64(size), "bytes/page")
		})
	}
}

// BenchmarkScrape is one scrape of /metrics through the collector in a
// registry behind promhttp, text format, with n containers.
func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{100, 500, 2000} {
		b.Run(fmt.Sprintf("containers=%d", n), func(b *testing.B) {
			snap := benchSnapshot(n)
			reg := prometheus.NewRegistry()
			reg.MustRegister(NewCollector(&fakeSource{snap: snap}, testInfo))
			h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			var size int
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("scrape: HTTP %d", w.Code)
				}
				size = w.Body.Len()
			}
			b.ReportMetric(float64(size), "bytes/scrape")
		})
	}
}
