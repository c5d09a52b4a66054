// Package storm drives a scrape storm against a running agent: many
// concurrent /metrics scrapers and one /healthz prober, for a fixed time.
// The end-to-end test (bounds that must hold) and `make bench` (the figures)
// share it, so that both measure the same storm.
package storm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
	// MaxGrowth bounds what the storm adds to the agent's peak RSS:
	// MaxRSS less the agent's RSS before a storm on a quiet node at this
	// scale (55-56 MiB, `make bench` section storm). The end-to-end test
	// holds the storm to it, because before a storm the agent's RSS follows
	// what else the node runs (the unwinding tables of its programs, the
	// gone containers of its churn: 84 MiB beside hack/busy-load.sh).
	MaxGrowth = 40 << 20
)

// Config is one storm.
type Config struct {
	URL      string        // the agent's base URL, http://host:port
	Scrapers int           // concurrent /metrics clients, each scraping in a loop
	Duration time.Duration // how long the scrapers run
	// Prober is the prober command's binary (BuildProber). It asks
	// /healthz every ProbeEvery (default 100 ms), as a kubelet's liveness
	// probe would during the storm, but far more often, from a process of
	// its own.
	Prober     string
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
	Probes        []time.Duration // /healthz answered 200, asked by the prober
	ProbeFailures int
	// InProcessProbes are /healthz answered 200 to a probe from the
	// scrapers' own process, for reference: it waits for that process's
	// scheduler behind the scrapers, which the prober does not.
	InProcessProbes []time.Duration
	ScrapeBytes     int64 // body size of the last 200 /metrics
	FirstError      string
}

// BuildProber builds the prober command into dir and returns its path.
func BuildProber(dir string) (string, error) {
	bin := filepath.Join(dir, "storm-prober")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/leakwatch/leakwatch/test/storm/prober").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building the storm prober: %w\n%s", err, out)
	}
	return bin, nil
}

// Run runs the storm until cfg.Duration has passed or ctx ends. It fails
// only when the prober cannot run; what the agent answers is in Result.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Prober == "" {
		return Result{}, errors.New("storm: no prober (BuildProber)")
	}
	if cfg.ProbeEvery <= 0 {
		cfg.ProbeEvery = 100 * time.Millisecond
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	parent := ctx
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
			if err == nil && code == http.StatusOK {
				mu.Lock()
				res.InProcessProbes = append(res.InProcessProbes, took)
				mu.Unlock()
			}
			sleep(ctx, cfg.ProbeEvery)
		}
	})
	probes, failures, err := probe(parent, cfg)
	wg.Wait()
	if err != nil {
		return res, err
	}
	res.Probes = probes
	res.ProbeFailures = len(failures)
	if len(failures) > 0 {
		fail("/healthz: " + failures[0])
	}
	return res, nil
}

// probe runs the prober for the storm's duration and reads its lines.
// It ends with the storm, or sooner when ctx ends.
func probe(ctx context.Context, cfg Config) (probes []time.Duration, failures []string, err error) {
	cmd := exec.CommandContext(ctx, cfg.Prober, "-url", cfg.URL+"/healthz", "-every", cfg.ProbeEvery.String(),
		"-timeout", cfg.Timeout.String(), "-duration", cfg.Duration.String())
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("storm prober: %w", err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if reason, ok := strings.CutPrefix(line, "fail "); ok {
			failures = append(failures, reason)
			continue
		}
		ns, perr := strconv.ParseInt(line, 10, 64)
		if perr != nil {
			failures = append(failures, "unreadable prober line "+strconv.Quote(line))
			continue
		}
		probes = append(probes, time.Duration(ns))
	}
	if err := cmd.Wait(); err != nil {
		return probes, failures, fmt.Errorf("storm prober: %w: %s", err, stderr.String())
	}
	return probes, failures, nil
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
