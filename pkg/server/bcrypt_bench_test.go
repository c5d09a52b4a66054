package server

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// BenchmarkScrapeDuringPasswordFlood measures how long a scrape with the
// right password takes while clients flood the agent with wrong ones, at
// the bcrypt costs docs/security.md discusses. The exporter toolkit checks
// one password at a time and caches the last 100 answers, so every distinct
// wrong password costs one bcrypt comparison in a queue that the good
// scrape joins whenever the flood has pushed its answer out of the cache.
// Each iteration is one good scrape; the figures are its median and worst.
//
//	go test -run '^$' -bench ScrapeDuringPasswordFlood -benchtime 20x ./pkg/server/
func BenchmarkScrapeDuringPasswordFlood(b *testing.B) {
	for _, tc := range []struct{ cost, flooders int }{{10, 8}, {12, 8}, {10, 32}, {12, 32}} {
		cost, flooders := tc.cost, tc.flooders
		b.Run(fmt.Sprintf("cost=%d/flooders=%d", cost, flooders), func(b *testing.B) {
			hash, err := bcrypt.GenerateFromPassword([]byte(testPassword), cost)
			if err != nil {
				b.Fatal(err)
			}
			cfgFile := writeWebConfig(b, b.TempDir(), "basic_auth_users:\n  "+testUser+": "+string(hash)+"\n")
			s, err := New(Config{Listen: "127.0.0.1:0", WebConfigFile: cfgFile}, newTestSource(), newTestRegistry(), nil)
			if err != nil {
				b.Fatal(err)
			}
			before := runtime.NumGoroutine()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			<-s.Listening()
			url := "http://" + s.Addr() + "/metrics"

			var wg sync.WaitGroup
			for f := range flooders {
				wg.Go(func() {
					c := &http.Client{Timeout: time.Minute}
					for i := 0; ctx.Err() == nil; i++ {
						req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
						req.SetBasicAuth(testUser, fmt.Sprintf("wrong-%d-%d", f, i))
						if resp, err := c.Do(req); err == nil {
							_ = resp.Body.Close()
						}
					}
				})
			}
			good := &http.Client{Timeout: time.Minute}
			took := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				time.Sleep(200 * time.Millisecond) // a scrape interval, shortened
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.SetBasicAuth(testUser, testPassword)
				start := time.Now()
				resp, err := good.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("good scrape: %d", resp.StatusCode)
				}
				took = append(took, time.Since(start))
			}
			b.StopTimer()
			cancel()
			// Wrong passwords still queued for bcrypt outlast the graceful
			// shutdown; that is the flood, not a failure here.
			_ = s.Close()
			wg.Wait()
			if err := <-done; err != nil {
				b.Logf("run: %v", err)
			}
			// Their handlers finish their comparisons before they end.
			for start := time.Now(); runtime.NumGoroutine() > before && time.Since(start) < time.Minute; time.Sleep(100 * time.Millisecond) {
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Milliseconds()), "p50-ms")
			b.ReportMetric(float64(took[len(took)-1].Milliseconds()), "max-ms")
		})
	}
}
