package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/leakwatch/leakwatch/pkg/cgroups"
	"github.com/leakwatch/leakwatch/pkg/detect"
	"github.com/leakwatch/leakwatch/pkg/state"
	"github.com/leakwatch/leakwatch/pkg/tracer"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestAnalyzeReportsEachFileAndKeepsGoingPastBadOnes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(bad, []byte("t,bytes\n0,100\n10,abc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	leak := "../../test/corpus/leak_1mib_clean.csv"
	flat := "../../test/corpus/flat_noise.csv"
	code, stdout, stderr := runCLI(t, "analyze", leak, bad, flat)
	if code != exitFailure {
		t.Errorf("exit code %d with one bad file, want %d", code, exitFailure)
	}
	if !strings.Contains(stderr, "bad.csv") || !strings.Contains(stderr, "line 3") {
		t.Errorf("stderr %q does not name the bad file and its line", stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d result lines, want 2 (one per good file):\n%s", len(lines), stdout)
	}
	type result struct {
		File       string   `json:"file"`
		Leak       bool     `json:"leak"`
		DetectedAt *float64 `json:"detected_at"`
		Growth     *float64 `json:"growth_bytes_per_second"`
		Confidence *float64 `json:"confidence"`
	}
	var results []result
	for _, l := range lines {
		var r result
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("line %q is not JSON: %v", l, err)
		}
		if r.Growth == nil || r.Confidence == nil {
			t.Errorf("line %q lacks growth or confidence", l)
		}
		results = append(results, r)
	}
	if r := results[0]; r.File != leak || !r.Leak || r.DetectedAt == nil {
		t.Errorf("leak file: %+v, want leak with a detection time", r)
	}
	if r := results[1]; r.File != flat || r.Leak || r.DetectedAt != nil {
		t.Errorf("flat file: %+v, want no leak and detected_at null", r)
	}
}

// --explain adds why the verdict turned leaking: the tier, its window and
// slope, the floor against the history; without it the line stays as it
// was.
func TestAnalyzeExplain(t *testing.T) {
	leak := "../../test/corpus/leak_12kib_gc.csv"
	code, stdout, stderr := runCLI(t, "analyze", "--explain", leak)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r detect.Result
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("%q: %v", stdout, err)
	}
	e := r.Explanation
	if e == nil {
		t.Fatalf("no explanation in %s", stdout)
	}
	// The series: a 12 KiB/s leak under a 60 s GC sawtooth.
	if e.Tier == "none" || e.WindowSeconds <= 0 || e.GrowthBytesPerSecond < 8<<10 || e.GrowthBytesPerSecond > 16<<10 || e.CycleSeconds < 50 || e.CycleSeconds > 120 {
		t.Errorf("explanation %+v, want a tier, a window, about 12 KiB/s and a cycle of about 60 s", *e)
	}
	if e.FloorBytes == nil || e.PreviousHighBytes == nil || *e.FloorBytes <= *e.PreviousHighBytes || e.Summary == "" {
		t.Errorf("explanation %+v: the floor must stand above the previous high, with a summary", *e)
	}
	_, plain, _ := runCLI(t, "analyze", leak)
	if strings.Contains(plain, "explanation") {
		t.Errorf("without --explain: %s", plain)
	}
}

func TestUsageErrors(t *testing.T) {
	if code, _, _ := runCLI(t); code != exitUsage {
		t.Errorf("no command: exit %d, want %d", code, exitUsage)
	}
	if code, _, stderr := runCLI(t, "nope"); code != exitUsage || !strings.Contains(stderr, "unknown command") {
		t.Errorf("unknown command: exit %d, stderr %q", code, stderr)
	}
	if code, _, stderr := runCLI(t, "analyze"); code != exitFailure || !strings.Contains(stderr, "no FILE") {
		t.Errorf("analyze without files: exit %d, stderr %q", code, stderr)
	}
	if code, _, _ := runCLI(t, "run", "--interval", "bogus"); code != exitUsage {
		t.Errorf("bad flag value: exit %d, want %d", code, exitUsage)
	}
	if code, _, stderr := runCLI(t, "run", "-h"); code != exitOK || !strings.Contains(stderr, "LEAKWATCH_INTERVAL") {
		t.Errorf("run -h: exit %d, stderr should list LEAKWATCH_INTERVAL: %q", code, stderr)
	}
}

func TestEnvironmentSetsFlagsAndTheCommandLineWins(t *testing.T) {
	t.Setenv("LEAKWATCH_INTERVAL", "3s")
	t.Setenv("LEAKWATCH_LISTEN", "127.0.0.1:1")
	cfg, err := parseRunConfig([]string{"--listen", "127.0.0.1:2"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Agent.Interval.String() != "3s" || cfg.Listen != "127.0.0.1:2" {
		t.Errorf("interval %v listen %q; want 3s from the environment and 127.0.0.1:2 from the flag", cfg.Agent.Interval, cfg.Listen)
	}
	// The file is read at parsing: a missing or unprotective one is refused.
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(webConfig, []byte("basic_auth_users:\n  prometheus: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LEAKWATCH_WEB_CONFIG_FILE", webConfig)
	if cfg, err := parseRunConfig(nil, &bytes.Buffer{}); err != nil || cfg.WebConfig != webConfig {
		t.Errorf("LEAKWATCH_WEB_CONFIG_FILE: %q, %v", cfg.WebConfig, err)
	}
	t.Setenv("LEAKWATCH_INTERVAL", "soon")
	if _, err := parseRunConfig(nil, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "LEAKWATCH_INTERVAL") {
		t.Errorf("bad variable: error %v, want one naming LEAKWATCH_INTERVAL", err)
	}
}

// The agent's own pprof endpoint is off unless asked for, by flag or by
// LEAKWATCH_WEB_ENABLE_PPROF.
func TestEnablePprofFlag(t *testing.T) {
	if cfg, err := parseRunConfig(nil, &bytes.Buffer{}); err != nil || cfg.EnablePprof {
		t.Errorf("default: EnablePprof %v, %v; want off", cfg.EnablePprof, err)
	}
	if cfg, err := parseRunConfig([]string{"--web.enable-pprof"}, &bytes.Buffer{}); err != nil || !cfg.EnablePprof {
		t.Errorf("--web.enable-pprof: EnablePprof %v, %v; want on", cfg.EnablePprof, err)
	}
	t.Setenv("LEAKWATCH_WEB_ENABLE_PPROF", "true")
	if cfg, err := parseRunConfig(nil, &bytes.Buffer{}); err != nil || !cfg.EnablePprof {
		t.Errorf("LEAKWATCH_WEB_ENABLE_PPROF=true: EnablePprof %v, %v; want on", cfg.EnablePprof, err)
	}
	if cfg, err := parseRunConfig([]string{"--web.enable-pprof=false"}, &bytes.Buffer{}); err != nil || cfg.EnablePprof {
		t.Errorf("the command line does not win over the environment: EnablePprof %v, %v", cfg.EnablePprof, err)
	}
}

func TestExitCodesAreDistinctPerMissingPart(t *testing.T) {
	cases := map[string]error{
		"privileges": &tracer.HostError{Requirement: tracer.RequirePrivileges},
		"btf":        &tracer.HostError{Requirement: tracer.RequireBTF},
		"lockdown":   &tracer.HostError{Requirement: tracer.RequireLockdown},
		"tracefs":    &tracer.HostError{Requirement: tracer.RequireTracefs},
		"load":       &tracer.HostError{Requirement: tracer.RequireLoad},
		"cgroups":    fmt.Errorf("detecting: %w", cgroups.ErrNoController),
		"state":      fmt.Errorf("opening: %w", state.ErrLocked),
		"other":      errors.New("boom"),
	}
	seen := map[int]string{}
	for name, err := range cases {
		code := report(io.Discard, "run", err)
		if other, dup := seen[code]; dup && name != "other" && other != "other" {
			t.Errorf("%s and %s share exit code %d", name, other, code)
		}
		seen[code] = name
		if code == exitOK || code == exitUsage {
			t.Errorf("%s: exit code %d", name, code)
		}
	}
	if code := report(io.Discard, "run", cases["other"]); code != exitFailure {
		t.Errorf("other failure: %d, want %d", code, exitFailure)
	}
}

// The CLI reaches an agent behind TLS and basic auth (as the manifests
// ship it). httptest's TLS server stands in for the agent's listener.
func TestClientTLSAndBasicAuth(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "ops" || p != "s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"unauthorized"}`)
			return
		}
		_, _ = io.WriteString(w, `[{"id":"7","cgroup":"/a","memory_bytes":1048576,"growth_bytes_per_second":10,"leaking":true}]`)
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, "top", "--once", "--server", srv.URL, "--ca-file", ca, "--user", "ops:s3cret")
	if code != exitOK || !strings.Contains(out, "LEAK") {
		t.Errorf("top with TLS and auth: exit %d, out %q, err %q", code, out, stderr)
	}
	if code, _, stderr := runCLI(t, "top", "--once", "--server", srv.URL, "--ca-file", ca); code == exitOK || !strings.Contains(stderr, "unauthorized") {
		t.Errorf("top without credentials: exit %d, err %q; want the agent's 401", code, stderr)
	}
	if code, _, stderr := runCLI(t, "top", "--once", "--server", srv.URL, "--user", "ops:s3cret"); code == exitOK || !strings.Contains(stderr, "certificate") {
		t.Errorf("top without the CA: exit %d, err %q; want a certificate error", code, stderr)
	}
}

// A web config file that protects nothing (here an emptied one) stops
// `run` at once with a usage error that says why, before anything starts.
func TestRunRefusesWebConfigWithoutProtection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(path, []byte("# nothing yet\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "run", "--no-tracer", "--web.config.file", path)
	if code != exitUsage || !strings.Contains(stderr, "grants no protection") || !strings.Contains(stderr, path) {
		t.Errorf("exit %d, stderr %q; want %d and the reason naming the file", code, stderr, exitUsage)
	}
}
