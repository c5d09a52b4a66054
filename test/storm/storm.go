// Package storm drives a scrape storm against a running agent: many
// concurrent /metrics scrapers and one /healthz prober, for a fixed time.
// The end-to-end test (bounds that must hold) and `make bench` (the figures)
// share it, so that both measure the same storm.
package storm

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// The storm of the issue on surviving production, at the deployed limits
// (deploy/kubernetes/03-daemonset.yaml, the Helm chart's defaults).
const (
	// PodLimit and GoMemLimit are the DaemonSet's memory limit and
	// GOMEMLIMIT, which the agent runs under.
	PodLimit   = 256 << 20
	GoMemLimit = "200MiB"
	// Containers are added to the node: with its own, about the default
	// --max-containers of 2,000.
	Containers = 1800
	Scrapers   = 50
	// MaxRSS bounds the agent's peak resident memory through the storm.
	MaxRSS = 96 << 20
)

// Config is one storm.
type Config struct {
	URL      string        // the agent's base URL, http://host:port
	Scrapers int           // concurrent /metrics clients, each scraping in a loop
	Duration time.Duration // how long the scrapers run
	// ProbeEvery is the /healthz period (default 100 ms), as a kubelet's
	// liveness probe would ask during the storm, but far more often.
	ProbeEvery time.Duration
	// Timeout bounds one request (default 10 s): a request over it counts
	// as failed, and the storm never outlasts Duration by more than it.
	Timeout time.Duration
}

// Result is what the storm saw. Latencies are of requests answered 200.
type Result struct {
	Scrapes       []time.Duration // /metrics answered 200
	Refused       int             // /metrics answered 429 (the agent's cap)
	Failed        int             // /metrics errors, timeouts and other codes
	Probes        []time.Duration // /healthz answered 200
	ProbeFailures int
	ScrapeBytes   int64 // body size of the last 200 /metrics
	FirstError    string
}

// Run runs the storm until cfg.Duration has passed or ctx ends.
func Run(ctx context.Context, cfg Config) Result {
	if cfg.ProbeEvery <= 0 {
		cfg.ProbeEvery = 100 * time.Millisecond
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	// One connection per scraper, kept alive, as Prometheus replicas hold
	// theirs; the prober has its own.
	client := &http.Client{
		Timeout:   cfg.Timeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Scrapers + 1, MaxConnsPerHost: cfg.Scrapers + 1},
	}
	defer client.CloseIdleConnections()

	var (
		mu  sync.Mutex
		res Result
		wg  sync.WaitGroup
	)
	fail := func(err string) {
		if res.FirstError == "" {
			res.FirstError = err
		}
	}
	for range cfg.Scrapers {
		wg.Go(func() {
			for ctx.Err() == nil {
				start := time.Now()
				code, n, err := get(client, cfg.URL+"/metrics")
				took := time.Since(start)
				mu.Lock()
				switch {
				case err != nil:
					if ctx.Err() == nil {
						res.Failed++
						fail(err.Error())
					}
				case code == http.StatusOK:
					res.Scrapes = append(res.Scrapes, took)
					res.ScrapeBytes = n
				case code == http.StatusTooManyRequests:
					res.Refused++
				default:
					res.Failed++
					fail(fmt.Sprintf("/metrics: HTTP %d", code))
				}
				mu.Unlock()
				if code == http.StatusTooManyRequests {
					// Prometheus waits for its next interval; a storm
					// client comes back soon, but not in a busy loop.
					sleep(ctx, 50*time.Millisecond)
				}
			}
		})
	}
	wg.Go(func() {
		for ctx.Err() == nil {
			start := time.Now()
			code, _, err := get(client, cfg.URL+"/healthz")
			took := time.Since(start)
			mu.Lock()
			if err == nil && code == http.StatusOK {
				res.Probes = append(res.Probes, took)
			} else if ctx.Err() == nil {
				res.ProbeFailures++
				fail(fmt.Sprintf("/healthz: code %d, %v", code, err))
			}
			mu.Unlock()
			sleep(ctx, cfg.ProbeEvery)
		}
	})
	wg.Wait()
	return res
}

func get(c *http.Client, url string) (int, int64, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, n, err
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// Quantile is the q-quantile (0..1) of d by the nearest-rank method, 0 for
// no samples.
func Quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}
