package server

import (
	"bytes"
	"fmt"
	"net/http"
	httppprof "net/http/pprof"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The agent's own profiles (Config.EnablePprof) are net/http/pprof's
// handlers mounted on the server's mux, behind the same web config and
// limits as every other endpoint. Importing net/http/pprof also registers
// them on http.DefaultServeMux, which is harmless only because nothing in
// the agent serves DefaultServeMux: the server always has its own handler.
const (
	pprofPrefix     = "/debug/pprof/"
	pprofSymbolPath = pprofPrefix + "symbol"

	// maxPprofSeconds bounds ?seconds= of a CPU profile, a trace or a delta
	// profile: each holds a connection and a goroutine, and a CPU profile or
	// trace slows the whole agent while it runs.
	maxPprofSeconds = 60
	// maxConcurrentPprofRuns is how many of those run at once. The runtime
	// allows one CPU profile and one trace at a time anyway.
	maxConcurrentPprofRuns = 1
	// pprofRetryAfter is what a client asking beyond maxConcurrentPprofRuns
	// is told to wait: about the length of the default CPU profile.
	pprofRetryAfter = 30 * time.Second
)

// pprofDefaultSeconds is how long net/http/pprof runs the endpoints that
// last without ?seconds=.
var pprofDefaultSeconds = map[string]time.Duration{
	"profile": 30 * time.Second,
	"trace":   time.Second,
}

// pprof serves /debug/pprof/: the index, cmdline, profile, symbol, trace
// and the runtime's named profiles (heap, goroutine, allocs, ...).
func (s *Server) pprof(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, pprofPrefix)
	allowed := []string{http.MethodGet, http.MethodHead}
	if name == "symbol" {
		// pprof posts the addresses it wants symbolized.
		allowed = append(allowed, http.MethodPost)
	}
	if !slices.Contains(allowed, r.Method) {
		methodNotAllowed(allowed...).ServeHTTP(w, r)
		return
	}
	var h http.Handler
	switch name {
	case "":
		h = http.HandlerFunc(httppprof.Index)
	case "cmdline":
		h = http.HandlerFunc(httppprof.Cmdline)
	case "profile":
		h = http.HandlerFunc(httppprof.Profile)
	case "symbol":
		h = http.HandlerFunc(httppprof.Symbol)
	case "trace":
		h = http.HandlerFunc(httppprof.Trace)
	default:
		if pprof.Lookup(name) == nil {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no profile %q", name))
			return
		}
		h = httppprof.Handler(name)
	}
	lasts, err := pprofDuration(name, r.URL.Query().Get("seconds"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if lasts > 0 {
		if !s.pprofRuns.acquire(w) {
			return
		}
		defer s.pprofRuns.release()
		// The server's write timeout, counted from the request, would cut
		// the answer of a profile that lasts about as long. net/http/pprof
		// moves the deadline itself too, but that is its detail; the bound
		// here is ours. A test's recorder has no deadline to move.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.http.WriteTimeout + lasts))
	}
	jw := &pprofErrors{ResponseWriter: w}
	h.ServeHTTP(jw, r)
	jw.finish()
}

// pprofDuration is how long the endpoint name runs with ?seconds=v, 0 for
// one that answers at once. Only a trace takes a fraction of a second:
// net/http/pprof reads the others' as a whole number.
func pprofDuration(name, v string) (time.Duration, error) {
	switch {
	case name == "" || name == "cmdline" || name == "symbol":
		return 0, nil
	case v == "":
		return pprofDefaultSeconds[name], nil
	case name == "trace":
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0 && f <= maxPprofSeconds) {
			return 0, fmt.Errorf("seconds %q: must be a number over 0 and at most %d", v, maxPprofSeconds)
		}
		return time.Duration(f * float64(time.Second)), nil
	default:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 || n > maxPprofSeconds {
			return 0, fmt.Errorf("seconds %q: must be a whole number from 1 to %d", v, maxPprofSeconds)
		}
		return time.Duration(n) * time.Second, nil
	}
}

// pprofErrors passes an answer of net/http/pprof through, but holds back
// its plain-text errors, which it marks with X-Go-Pprof, so that finish
// sends them as the JSON errors of every other endpoint.
type pprofErrors struct {
	http.ResponseWriter
	status int
	msg    bytes.Buffer
}

func (p *pprofErrors) WriteHeader(status int) {
	if status >= http.StatusBadRequest && p.Header().Get("X-Go-Pprof") != "" {
		p.status = status
		return
	}
	p.ResponseWriter.WriteHeader(status)
}

func (p *pprofErrors) Write(b []byte) (int, error) {
	if p.status != 0 {
		return p.msg.Write(b)
	}
	return p.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection, as
// net/http/pprof does to move the write deadline.
func (p *pprofErrors) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// finish sends the error held back, if any.
func (p *pprofErrors) finish() {
	if p.status == 0 {
		return
	}
	p.Header().Del("X-Go-Pprof")
	p.Header().Del("Content-Disposition")
	writeError(p.ResponseWriter, p.status, strings.TrimSpace(p.msg.String()))
}
