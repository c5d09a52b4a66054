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

// BenchmarkScrape is one scrape of /metrics as the agent serves it (the
// collector in a registry behind promhttp, text format) with n containers.
func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{100, 500} {
		b.Run(fmt.Sprintf("containers=%d", n), func(b *testing.B) {
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
