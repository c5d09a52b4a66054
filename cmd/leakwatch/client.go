package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/leakwatch/leakwatch/pkg/lookup"
)

// apiContainer is the part of /api/v1/containers the CLI uses.
type apiContainer struct {
	ID          string   `json:"id"`
	Cgroup      string   `json:"cgroup"`
	ContainerID string   `json:"container_id"`
	Namespace   string   `json:"namespace"`
	Pod         string   `json:"pod"`
	Container   string   `json:"container"`
	Memory      uint64   `json:"memory_bytes"`
	LeakSignal  uint64   `json:"leak_signal_bytes"`
	Limit       uint64   `json:"limit_bytes"`
	Growth      float64  `json:"growth_bytes_per_second"`
	Confidence  float64  `json:"confidence"`
	Leaking     bool     `json:"leaking"`
	TimeToLimit *float64 `json:"time_to_limit_seconds"`
	OOMKills    uint64   `json:"oom_kills"`
	Gone        bool     `json:"gone"`
	WasLeaking  bool     `json:"was_leaking"`
}

func (c apiContainer) names() lookup.Names {
	return lookup.Names{ID: c.ID, Cgroup: c.Cgroup, ContainerID: c.ContainerID, Namespace: c.Namespace, Pod: c.Pod, Container: c.Container, Gone: c.Gone}
}

func (c apiContainer) name() string { return c.names().Name() }

// client talks to a running agent.
type client struct {
	base       string
	http       *http.Client
	user, pass string
}

// clientFlags are how the CLI reaches an agent, TLS and basic auth
// included (an agent started with --web.config.file).
type clientFlags struct {
	server   string
	user     string // USER:PASSWORD
	caFile   string
	insecure bool
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.server, "server", "http://127.0.0.1:9753", "`URL` of the agent")
	fs.StringVar(&f.user, "user", "", "`USER:PASSWORD` for an agent that asks for basic auth")
	fs.StringVar(&f.caFile, "ca-file", "", "CA certificate to trust for an https:// agent")
	fs.BoolVar(&f.insecure, "insecure", false, "do not verify an https:// agent's certificate")
}

func (f *clientFlags) client() (*client, error) {
	server := strings.TrimRight(f.server, "/")
	if !strings.HasPrefix(server, "http://") && !strings.HasPrefix(server, "https://") {
		return nil, fmt.Errorf("--server %q: must start with http:// or https://", server)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: f.insecure} //nolint:gosec // asked for with --insecure
	if f.caFile != "" {
		pem, err := os.ReadFile(f.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", f.caFile)
		}
		tlsCfg.RootCAs = pool
	}
	c := &client{base: server, http: &http.Client{
		Timeout:   60 * time.Second,
		Transport: &http.Transport{TLSClientConfig: tlsCfg, Proxy: http.ProxyFromEnvironment},
	}}
	if f.user != "" {
		var ok bool
		if c.user, c.pass, ok = strings.Cut(f.user, ":"); !ok {
			return nil, errors.New("--user must be USER:PASSWORD")
		}
	}
	return c, nil
}

func (c *client) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking the agent at %s: %w (is `leakwatch run` running there? set --server)", c.base, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s: %s", resp.Status, e.Error)
		}
		return nil, fmt.Errorf("%s from %s%s", resp.Status, c.base, path)
	}
	return resp, nil
}

func (c *client) containers(ctx context.Context) ([]apiContainer, error) {
	resp, err := c.get(ctx, "/api/v1/containers")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var list []apiContainer
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, fmt.Errorf("decoding the container list: %w", err)
	}
	return list, nil
}

// find resolves what a user typed to one container, as the API does for
// /api/v1/containers/{id}.
func find(list []apiContainer, q string) (apiContainer, error) {
	i, err := lookup.Find(list, q, apiContainer.names)
	if err != nil {
		if errors.Is(err, lookup.ErrNotFound) {
			return apiContainer{}, fmt.Errorf("%w; `leakwatch top` lists them", err)
		}
		return apiContainer{}, err
	}
	return list[i], nil
}
