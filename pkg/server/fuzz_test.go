package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzHandler sends every method, path and query a client could to the
// routes, over a source with profiles. Nothing may panic or fail with 5xx,
// redirects must say where to, and every error must be a JSON object with
// a message.
func FuzzHandler(f *testing.F) {
	for _, seed := range []struct{ method, path, query string }{
		{"GET", "/metrics", ""},
		{"GET", "/healthz", ""},
		{"HEAD", "/readyz", ""},
		{"GET", "/api/v1/containers", "leaking=true&namespace=shop"},
		{"GET", "/api/v1/containers", "leaking=maybe"},
		{"GET", "/api/v1/containers/100", ""},
		{"GET", "/api/v1/containers/%2e%2e/profile", "type=faults&seconds=600"},
		{"GET", "/api/v1/containers/100/profile", "seconds=99999999999999999999"},
		{"GET", "/api/v1/oomkills/18446744073709551616/profile", "type=inuse"},
		{"POST", "/api/v1/containers", ""},
		{"OPTIONS", "*", ""},
		{"CONNECT", "/metrics", ""},
		{"GET", "//api/v1/../containers/./100", "a=%zz;b"},
		{"GET", "/debug/pprof/heap", ""},
		{"GET", "/debug/pprof/profile", "seconds=1"},
	} {
		f.Add(seed.method, seed.path, seed.query)
	}
	src := &profileSource{fakeSource: newTestSource()}
	s, err := New(Config{}, src, newTestRegistry(), nil)
	if err != nil {
		f.Fatal(err)
	}
	h := s.Handler()

	f.Fuzz(func(t *testing.T, method, path, query string) {
		// Requests the HTTP server would refuse before any handler runs
		// (a method that is not a token, a target that does not parse)
		// are not the handler's to answer.
		if _, err := http.NewRequest(method, "http://leakwatch/", nil); err != nil {
			return
		}
		target := path
		if query != "" {
			target += "?" + query
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Method, req.URL, req.RequestURI = method, u, target
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		code := rec.Code
		switch {
		case code < 200 || code >= 500:
			t.Fatalf("%s %q: status %d; body %q", method, target, code, rec.Body)
		case code >= 300 && code < 400:
			if rec.Header().Get("Location") == "" {
				t.Fatalf("%s %q: redirect %d without Location", method, target, code)
			}
		case code >= 400:
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("%s %q: error %d with Content-Type %q", method, target, code, ct)
			}
			var e errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || strings.TrimSpace(e.Error) == "" {
				t.Fatalf("%s %q: error %d body %q is not a JSON error (%v)", method, target, code, rec.Body, err)
			}
		}
	})
}
